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

// TestDeployConfigsCheck: the example configs under deploy/ are valid configs.
func TestDeployConfigsCheck(t *testing.T) {
	for _, name := range []string{"ferry.toml", "k8s/ferry.toml"} {
		path := filepath.Join("..", "deploy", filepath.FromSlash(name))
		out, stderr, err := runFerry(t, "", "config", "check", path)
		if err != nil || !strings.Contains(out, "ok") {
			t.Errorf("ferry config check deploy/%s: %v\n%s%s", name, err, out, stderr)
		}
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

// documentedMetrics is the contract of the metric names a dashboard may use: Ferry's own
// (README, Metrics), the SFU gauges, and the process_*/go_* metrics of VictoriaMetrics/metrics.
var documentedMetrics = []string{
	"ferry_build_info",
	"ferry_allocations_active",
	"ferry_allocations_created_total",
	"ferry_allocation_lifetime_seconds_bucket",
	"ferry_allocation_lifetime_seconds_sum",
	"ferry_allocation_lifetime_seconds_count",
	"ferry_relay_packets_total",
	"ferry_relay_bytes_total",
	"ferry_relay_ports_in_use",
	"ferry_relay_ports_free",
	"ferry_stun_binding_requests_total",
	"ferry_turn_requests_total",
	"ferry_error_responses_total",
	"ferry_auth_failures_total",
	"ferry_peer_denied_total",
	"ferry_quota_rejections_total",
	"ferry_unauthenticated_dropped_total",
	"ferry_draining",
	"ferry_config_reloads_total",
	"ferry_sfu_rooms",
	"ferry_sfu_publishers",
	"ferry_sfu_subscribers",
	"ferry_sfu_tracks",
	"process_resident_memory_bytes",
	"process_virtual_memory_bytes",
	"process_open_fds",
	"process_max_fds",
	"process_cpu_seconds_total",
	"process_start_time_seconds",
	"go_goroutines",
	"go_gc_duration_seconds",
	"go_memstats_alloc_bytes",
	"go_memstats_heap_inuse_bytes",
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

// TestGrafanaDashboard: the dashboard is valid JSON with uid "ferry", and every metric its
// queries name is a documented one, filtered by the instance variable.
func TestGrafanaDashboard(t *testing.T) {
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
					if !slices.Contains(documentedMetrics, name) {
						t.Errorf("panel %q: %s is not a documented metric", p.Title, name)
					}
				}
			}
		}
	}
	walk(dash.Panels)
	if len(used) == 0 {
		t.Fatal("no metric found in the panels' queries")
	}
	t.Logf("%d metrics used by the dashboard", len(used))
}
