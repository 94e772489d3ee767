package reload

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch calls check after every change in the folder of the file at path,
// debounced, and once at the start, until ctx is done. It watches the
// folder, not the file, so that editors that save by writing a new file
// and renaming it over the old one (and Kubernetes' symlink swaps) are
// seen. check decides whether the file really changed
// ([State.ReloadIfChanged]).
func Watch(ctx context.Context, path string, debounce time.Duration, log *slog.Logger, check func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	if err := w.Add(filepath.Dir(path)); err != nil {
		w.Close()
		return err
	}
	base := filepath.Base(path)
	go func() {
		defer w.Close()
		// One check at once: a save between the first load and the
		// watch is not missed.
		timer := time.NewTimer(0)
		var first time.Time // of the pending burst; zero when none
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				// Only the file itself, or Kubernetes' ..data symlink
				// swap, is ours: a log written beside it is not.
				if name := filepath.Base(ev.Name); name != base && !strings.HasPrefix(name, "..") {
					continue
				}
				// Check once the burst settles, but never later than
				// maxWait after its first event.
				now := time.Now()
				if first.IsZero() {
					first = now
				}
				timer.Reset(min(debounce, max(first.Add(maxWait).Sub(now), 0)))
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				log.Warn("configuration watch error", "config", path, "error", err.Error())
			case <-timer.C:
				first = time.Time{}
				check()
			}
		}
	}()
	return nil
}

// maxWait bounds how long a steady stream of events on the file can put
// off a check.
const maxWait = time.Second

// digest returns a hash of b.
func digest(b []byte) [sha256.Size]byte { return sha256.Sum256(b) }
