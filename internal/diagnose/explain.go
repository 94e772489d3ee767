package diagnose

import (
	"fmt"
	"io"
	"net/http"
	"strconv"

	"candor/internal/failure"
)

// Explain writes the page of the cause with id (`candor explain ID`): its
// id, the status candor answers, the phase, the retry rule, what the
// client's problem response says (title and detail), the operator's
// explanation and the fix, all from the cause table. It reports false,
// writing nothing, when no cause has that id.
func Explain(w io.Writer, id string) bool {
	k, ok := failure.Lookup(id)
	if !ok {
		return false
	}
	row := k.Row()
	fmt.Fprintf(w, "cause:   %s\n", row.ID)
	fmt.Fprintf(w, "status:  %s\n", statusText(row.Status))
	if row.RetryAfter > 0 {
		fmt.Fprintf(w, "         with Retry-After: %d\n", row.RetryAfter)
	}
	fmt.Fprintf(w, "phase:   %s\n", row.Phase)
	fmt.Fprintf(w, "retry:   %s\n", retryText(row.Retry))
	if row.Status != failure.StatusClientClosed {
		// What the client's problem response says.
		fmt.Fprintf(w, "client:  title %q, detail %q\n", row.Title, row.Detail)
	}
	fmt.Fprintf(w, "what:    %s\n", row.Explanation)
	fmt.Fprintf(w, "fix:     %s\n", row.Fix)
	return true
}

// KnownIDs returns every cause id, in table order.
func KnownIDs() []string {
	ks := failure.Kinds()
	ids := make([]string, len(ks))
	for i, k := range ks {
		ids[i] = k.String()
	}
	return ids
}

func statusText(status int) string {
	if status == failure.StatusClientClosed {
		return strconv.Itoa(status) + " (in logs and metrics only; nothing is sent to the client, which went away)"
	}
	return strconv.Itoa(status) + " " + http.StatusText(status)
}

func retryText(r failure.Retry) string {
	switch r {
	case failure.RetryAlways:
		return "always: nothing of the request was sent, so candor may try another target (the route's retry.attempts, within its retry budget)"
	case failure.RetryIfReplayable:
		return "if replayable: the request may have reached the upstream, so candor tries another target only for an idempotent method or a request with Idempotency-Key whose body it could buffer"
	case failure.RetryNever:
		return "never: candor does not try another target"
	}
	return r.String()
}
