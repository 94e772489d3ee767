package telemetry_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"candor/internal/failure"
)

// rulesDir holds the shipped Prometheus rules and their unit tests.
var rulesDir = filepath.Join("..", "..", "deploy")

// TestAlertRules checks deploy/alerts.yml with promtool and runs its unit
// tests, deploy/alerts_test.yml. promtool comes with Debian's prometheus
// package, which .ci/run installs; the test fails without it.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install it (apt-get install prometheus; .ci/run does)")
	}
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = rulesDir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// causeRef matches a cause label matcher's value, or a cause id given to
// `candor explain`.
var causeRef = regexp.MustCompile(`cause[!=~]+"([^"]*)"|candor explain ([a-z_]+)`)

// TestAlertRulesCauses: the rules' lists of 502 and 504 causes are every
// cause of the cause table with that status, in table order, and every
// cause the alerts name exists.
func TestAlertRulesCauses(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(rulesDir, "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Rules []struct {
				Record, Alert, Expr string
				Annotations         map[string]string
			}
		}
	}
	if err := yaml.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	exprs := map[string]string{}
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			exprs[r.Record+r.Alert] = r.Expr
			if r.Alert != "" && !strings.Contains(r.Annotations["description"], "candor explain") {
				t.Errorf("%s: description does not point to `candor explain`", r.Alert)
			}
		}
	}
	for record, status := range map[string]int{
		"upstream:candor_gateway_502:rate5m": 502,
		"upstream:candor_gateway_504:rate5m": 504,
	} {
		var ids []string
		for _, k := range failure.Kinds() {
			if k.Status() == status {
				ids = append(ids, k.String())
			}
		}
		want := `cause=~"` + strings.Join(ids, "|") + `"`
		if !strings.Contains(exprs[record], want) {
			t.Errorf("%s: expression %q\nlacks %s (the cause table's %d causes)", record, exprs[record], want, status)
		}
	}
	// Every cause id written out in the rules exists.
	for _, m := range causeRef.FindAllStringSubmatch(string(data), -1) {
		for id := range strings.SplitSeq(m[1]+m[2], "|") {
			if _, ok := failure.Lookup(id); id != "" && !ok {
				t.Errorf("alerts.yml names unknown cause %q (in %s)", id, m[0])
			}
		}
	}
}
