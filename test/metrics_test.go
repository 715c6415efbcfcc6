package test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// promtoolRequireEnv turns a missing promtool into a failure (CI installs it).
const promtoolRequireEnv = "FERRY_TEST_REQUIRE_PROMTOOL"

// promtoolPath is promtool's path; without it the test skips loudly, or fails when
// FERRY_TEST_REQUIRE_PROMTOOL is set.
func promtoolPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err == nil {
		return p
	}
	msg := "SKIPPED LOUDLY: promtool not installed (apt-get install -y prometheus); " + t.Name() + " cannot run"
	if os.Getenv(promtoolRequireEnv) != "" {
		t.Fatalf("%s (%s is set)", msg, promtoolRequireEnv)
	}
	fmt.Fprintln(os.Stderr, msg)
	t.Skip(msg)
	return ""
}

// TestMetricsHelp: every ferry_* family of a live Ferry (TURN and SFU) has a HELP text,
// and `promtool check metrics` finds nothing to say about any of them.
func TestMetricsHelp(t *testing.T) {
	s, _ := sfuSetup(t)
	startFerry(t, s.toml())
	body, status := httpGet(t, "http://"+s.metricsAddr+"/metrics")
	if status != 200 {
		t.Fatalf("GET /metrics: %d", status)
	}
	help := map[string]string{}
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, "# HELP "); ok {
			family, text, _ := strings.Cut(rest, " ")
			help[family] = text
		}
	}
	families := exportedFamilies(body)
	for _, family := range families {
		if strings.HasPrefix(family, "ferry_") && help[family] == "" {
			t.Errorf("%s has no HELP text", family)
		}
	}

	promtool := promtoolPath(t)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	// promtool exits 3 for lint problems (those of the Go runtime's metrics are not
	// Ferry's to fix), 1 when it cannot read the exposition at all.
	var exit *exec.ExitError
	if err != nil && (!errors.As(err, &exit) || exit.ExitCode() != 3) {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "ferry_") {
			t.Errorf("promtool check metrics: %s", line)
		}
	}
	t.Logf("%d families, promtool has nothing to say about the ferry_* ones", len(families))
}

// TestDashboardQueries: every query of the Grafana dashboard, with its variables filled
// in, is PromQL that Prometheus parses (promtool checks them as recording rules).
func TestDashboardQueries(t *testing.T) {
	promtool := promtoolPath(t)
	data, err := os.ReadFile(filepath.Join("..", "deploy", "grafana", "ferry-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct{ Panels []dashboardPanel }
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	fill := strings.NewReplacer("$instance", ".*", "$__rate_interval", "1m")
	var rules bytes.Buffer
	rules.WriteString("groups:\n- name: dashboard\n  rules:\n")
	n := 0
	var walk func([]dashboardPanel)
	walk = func(panels []dashboardPanel) {
		for _, p := range panels {
			walk(p.Panels)
			for _, target := range p.Targets {
				expr, _ := json.Marshal(fill.Replace(target.Expr)) // a JSON string is a YAML string
				fmt.Fprintf(&rules, "  - record: dashboard:query%d\n    expr: %s\n", n, expr)
				n++
			}
		}
	}
	walk(dash.Panels)
	path := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(path, rules.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules on the dashboard's %d queries: %v\n%s", n, err, out)
	}
	t.Logf("%d dashboard queries parse", n)
}
