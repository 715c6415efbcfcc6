package test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/ferry-rtc/ferry/conf"
)

// TestDeployConfigsCheck: the example configs under deploy/ pass ferry config check, which
// also reads the files they name; a cluster node's config is deploy/ferry.toml with
// deploy/cluster/cluster.toml appended.
func TestDeployConfigsCheck(t *testing.T) {
	for _, names := range [][]string{{"ferry.toml"}, {"k8s/ferry.toml"}, {"ferry.toml", "cluster/cluster.toml"}, {"k8s/cluster/ferry.toml"}} {
		var config []byte
		for _, name := range names {
			data, err := os.ReadFile(filepath.Join("..", "deploy", filepath.FromSlash(name)))
			if err != nil {
				t.Fatal(err)
			}
			config = append(append(config, data...), '\n')
		}
		checkDeployConfig(t, strings.Join(names, " + "), string(config))
	}
}

// checkDeployConfig runs ferry config check on config: each absolute path of a *_file key
// that does not exist here is moved into a temporary directory, where a secrets file (or
// any other *_file) gets a 32-character line, and a users file stays missing (no users yet).
func checkDeployConfig(t *testing.T, name, config string) {
	t.Helper()
	filePath := regexp.MustCompile(`(?m)^(\w+) = "(/[^"]+)"`)
	root := t.TempDir()
	config = filePath.ReplaceAllStringFunc(config, func(line string) string {
		m := filePath.FindStringSubmatch(line)
		key, path := m[1], m[2]
		if _, err := os.Stat(path); err == nil || !strings.HasSuffix(key, "_file") {
			return line
		}
		moved := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(moved), 0o700); err != nil {
			t.Fatal(err)
		}
		if key != "users_file" {
			if err := os.WriteFile(moved, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return fmt.Sprintf("%s = %q", key, moved)
	})
	path := filepath.Join(root, "ferry.toml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := runFerry(t, "", "config", "check", path)
	if err != nil || !strings.Contains(out, "ok") {
		t.Errorf("ferry config check deploy/%s: %v\n%s%s", name, err, out, stderr)
	}
}

// TestDeployConfigsSFU: a production config says whether it runs the SFU (the default's
// SFU, on every address with a key made up at each start, is for trying Ferry out), and
// one that runs it serves it on loopback behind a proxy, with its token key in a file.
func TestDeployConfigsSFU(t *testing.T) {
	for _, name := range []string{"ferry.toml", "k8s/ferry.toml"} {
		path := filepath.Join("..", "deploy", filepath.FromSlash(name))
		var raw struct {
			SFU map[string]any `toml:"sfu"`
		}
		if _, err := toml.DecodeFile(path, &raw); err != nil {
			t.Fatalf("deploy/%s: %v", name, err)
		}
		enabled, set := raw.SFU["enabled"].(bool)
		if !set {
			t.Errorf("deploy/%s does not set sfu.enabled", name)
			continue
		}
		cfg, err := conf.Load(path)
		if err != nil {
			t.Fatalf("deploy/%s: %v", name, err)
		}
		if !enabled {
			continue
		}
		if _, inline := raw.SFU["token_secret"]; inline || cfg.SFU.TokenSecretFile == "" {
			t.Errorf("deploy/%s runs the SFU without sfu.token_secret_file (or with the key inline)", name)
		}
		if ap, err := netip.ParseAddrPort(cfg.SFU.HTTP); err != nil || !ap.Addr().IsLoopback() {
			t.Errorf("deploy/%s serves the SFU on %s, want a loopback address behind a TLS proxy", name, cfg.SFU.HTTP)
		}
	}
}

// TestDaemonSetPorts: the DaemonSet declares every port the Kubernetes config listens on
// beyond loopback, with its protocol.
func TestDaemonSetPorts(t *testing.T) {
	cfg, err := conf.Load(filepath.Join("..", "deploy", "k8s", "ferry.toml"))
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(filepath.Join("..", "deploy", "k8s", "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	declared := map[string]bool{}
	for _, m := range regexp.MustCompile(`containerPort: (\d+), protocol: (UDP|TCP)`).FindAllStringSubmatch(string(manifest), -1) {
		declared[m[1]+"/"+strings.ToLower(m[2])] = true
	}
	listened := map[string]string{} // port/protocol → key
	add := func(key, network, addr string) {
		if ap, err := netip.ParseAddrPort(addr); err == nil && !ap.Addr().IsLoopback() {
			listened[fmt.Sprintf("%d/%s", ap.Port(), network)] = key
		}
	}
	for i, l := range cfg.Listen {
		add(fmt.Sprintf("listen[%d]", i), l.Network(), l.Addr)
	}
	add("metrics.listen", "tcp", cfg.Metrics.Listen)
	add("admin.listen", "tcp", cfg.Admin.Listen)
	if cfg.SFU.Enabled {
		add("sfu.http", "tcp", cfg.SFU.HTTP)
	}
	for port, key := range listened {
		if !declared[port] {
			t.Errorf("%s listens on %s, which daemonset.yaml does not declare (declared: %v)", key, port, declared)
		}
	}
}

// exportedMetrics are the names of the samples of a scrape: histograms give their _bucket,
// _sum and _count names.
func exportedMetrics(body string) map[string]bool {
	names := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			name, _, _ := strings.Cut(strings.Fields(line)[0], "{")
			names[name] = true
		}
	}
	return names
}

// exportedFamilies are the metric families of a scrape, by its TYPE lines.
func exportedFamilies(body string) []string {
	var families []string
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			families = append(families, strings.Fields(rest)[0])
		}
	}
	return families
}

// dashboardPanel is the part of a Grafana panel the test reads; rows hold their panels
// when collapsed.
type dashboardPanel struct {
	Title   string           `json:"title"`
	Type    string           `json:"type"`
	Panels  []dashboardPanel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// TestGrafanaDashboard: the dashboard is valid JSON with uid "ferry"; every metric its
// queries name is one a live Ferry (TURN and SFU) exports, filtered by the instance
// variable, and every ferry_* family that Ferry exports is charted.
func TestGrafanaDashboard(t *testing.T) {
	s, _ := sfuSetup(t)
	startFerry(t, s.toml())
	body, status := httpGet(t, "http://"+s.metricsAddr+"/metrics")
	if status != 200 {
		t.Fatalf("GET /metrics: %d", status)
	}
	exported := exportedMetrics(body)
	data, err := os.ReadFile(filepath.Join("..", "deploy", "grafana", "ferry-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID           string           `json:"uid"`
		SchemaVersion int              `json:"schemaVersion"`
		Panels        []dashboardPanel `json:"panels"`
		Templating    struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("ferry-dashboard.json: %v", err)
	}
	if dash.UID != "ferry" || len(dash.Panels) == 0 {
		t.Fatalf("uid %q, %d panels; want uid \"ferry\" and panels", dash.UID, len(dash.Panels))
	}
	vars := map[string]string{}
	for _, v := range dash.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" || vars["instance"] != "query" {
		t.Errorf("templating variables %v; want datasource (datasource) and instance (query)", vars)
	}

	metricName := regexp.MustCompile(`\b(ferry|process|go)_[a-z_]+`)
	used := map[string]bool{}
	var walk func([]dashboardPanel)
	walk = func(panels []dashboardPanel) {
		for _, p := range panels {
			walk(p.Panels)
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no targets", p.Title)
			}
			for _, target := range p.Targets {
				if !strings.Contains(target.Expr, `instance=~"$instance"`) {
					t.Errorf("panel %q: %q is not filtered by instance=~\"$instance\"", p.Title, target.Expr)
				}
				names := metricName.FindAllString(target.Expr, -1)
				if len(names) == 0 {
					t.Errorf("panel %q: %q names no metric", p.Title, target.Expr)
				}
				for _, name := range names {
					used[name] = true
					if !exported[name] {
						t.Errorf("panel %q: Ferry does not export %s", p.Title, name)
					}
				}
			}
		}
	}
	walk(dash.Panels)
	if len(used) == 0 {
		t.Fatal("no metric found in the panels' queries")
	}
	for _, family := range exportedFamilies(body) {
		if strings.HasPrefix(family, "ferry_") && !used[family] && !used[family+"_bucket"] {
			t.Errorf("no panel charts %s", family)
		}
	}
	t.Logf("%d metrics used by the dashboard", len(used))
}

// TestDockerfileHealthcheck: the image's HEALTHCHECK runs a ferry command that passes
// against a running server (with the test server's metrics address for the config's).
func TestDockerfileHealthcheck(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "deploy", "docker", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^HEALTHCHECK [^\n]*?CMD (\[[^\n]*\])`).FindAllStringSubmatch(
		strings.ReplaceAll(string(data), "\\\n", " "), 1)
	if len(m) == 0 {
		t.Fatal("no HEALTHCHECK ... CMD [...] in the Dockerfile")
	}
	var argv []string
	if err := json.Unmarshal([]byte(m[0][1]), &argv); err != nil || len(argv) < 2 || argv[0] != "/usr/local/bin/ferry" {
		t.Fatalf("HEALTHCHECK CMD %s: %v", m[0][1], err)
	}
	s, _ := newSetup(t, 4)
	startFerry(t, s.toml())
	args := argv[1:]
	if i := slices.Index(args, "--config"); i >= 0 {
		args = slices.Concat(args[:i], []string{"--addr", s.metricsAddr}, args[i+2:])
	}
	if out, stderr, err := runFerry(t, "", args...); err != nil {
		t.Fatalf("ferry %v: %v\n%s%s", args, err, out, stderr)
	}
}
