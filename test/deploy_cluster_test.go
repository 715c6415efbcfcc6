package test

import (
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/ferry-rtc/ferry/conf"
)

func readDeploy(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "deploy", filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestDeployClusterSystemd: the three-node layout's [cluster] names the Redis of
// deploy/cluster/redis.conf (address, port, password), and redirects to an https URL (the
// SFU of deploy/ferry.toml is on loopback behind a TLS proxy).
func TestDeployClusterSystemd(t *testing.T) {
	cfg, err := conf.Parse("ferry.toml + cluster.toml", []byte(readDeploy(t, "ferry.toml")+"\n"+readDeploy(t, "cluster/cluster.toml")))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(cfg.Cluster.Redis)
	if err != nil {
		t.Fatal(err)
	}
	redisConf := readDeploy(t, "cluster/redis.conf")
	directive := func(name string) []string {
		m := regexp.MustCompile(`(?m)^` + name + ` (.+)$`).FindStringSubmatch(redisConf)
		if m == nil {
			t.Fatalf("redis.conf has no %s", name)
		}
		return strings.Fields(m[1])
	}
	password, _ := u.User.Password()
	if got := directive("requirepass"); got[0] != password {
		t.Errorf("redis.conf requirepass %q, cluster.redis's password %q", got[0], password)
	}
	if got := directive("port"); got[0] != u.Port() {
		t.Errorf("redis.conf port %s, cluster.redis's %s", got[0], u.Port())
	}
	if got := directive("bind"); !strings.Contains(strings.Join(got, " "), u.Hostname()) {
		t.Errorf("redis.conf binds %v, not cluster.redis's host %s", got, u.Hostname())
	}
	if got := directive("protected-mode"); got[0] != "yes" {
		t.Errorf("redis.conf protected-mode %s", got[0])
	}
	if !strings.HasPrefix(cfg.Cluster.AdvertiseSFU, "https://") {
		t.Errorf("cluster.advertise_sfu %q: the redirects must go to the TLS proxy", cfg.Cluster.AdvertiseSFU)
	}
}

// TestDeployClusterKubernetes: the cluster overlay's config is deploy/k8s/ferry.toml's plus
// [cluster], whose Redis is redis.yaml's Service in the overlay's namespace, and users
// shared through that Redis (auth.users_redis = "cluster"); the overlay builds on
// deploy/k8s, and its patch replaces the DaemonSet's config volume.
func TestDeployClusterKubernetes(t *testing.T) {
	var base, overlay map[string]any
	if _, err := toml.Decode(readDeploy(t, "k8s/ferry.toml"), &base); err != nil {
		t.Fatal(err)
	}
	if _, err := toml.Decode(readDeploy(t, "k8s/cluster/ferry.toml"), &overlay); err != nil {
		t.Fatal(err)
	}
	cluster, _ := overlay["cluster"].(map[string]any)
	delete(overlay, "cluster")
	if a, _ := overlay["auth"].(map[string]any); a["users_redis"] != "cluster" {
		t.Errorf("k8s/cluster/ferry.toml: auth.users_redis = %v, want \"cluster\"", a["users_redis"])
	} else {
		delete(a, "users_redis")
		delete(a, "users_redis_max_stale")
	}
	if !equalTOML(base, overlay) {
		t.Errorf("k8s/cluster/ferry.toml is not k8s/ferry.toml with a [cluster] table:\n%v\n%v", base, overlay)
	}
	u, err := url.Parse(cluster["redis"].(string))
	if err != nil {
		t.Fatal(err)
	}
	kust := readDeploy(t, "k8s/cluster/kustomization.yaml")
	ns := regexp.MustCompile(`(?m)^namespace: (\S+)$`).FindStringSubmatch(kust)
	redis := readDeploy(t, "k8s/cluster/redis.yaml")
	service := regexp.MustCompile(`(?s)kind: Service\nmetadata:\n  name: (\S+).*port: (\d+)`).FindStringSubmatch(redis)
	if ns == nil || service == nil {
		t.Fatalf("no namespace in kustomization.yaml (%v) or no Service in redis.yaml (%v)", ns, service)
	}
	if want := service[1] + "." + ns[1] + ".svc.cluster.local"; u.Hostname() != want || u.Port() != service[2] {
		t.Errorf("cluster.redis %s:%s, want redis.yaml's Service %s:%s", u.Hostname(), u.Port(), want, service[2])
	}
	for _, want := range []string{"  - ../\n", "  - redis.yaml\n", "path: /spec/template/spec/volumes/0\n", "name: config\n"} {
		if !strings.Contains(kust, want) {
			t.Errorf("kustomization.yaml lacks %q", want)
		}
	}
	if !regexp.MustCompile(`(?s)volumes:\n        - name: config\n`).MatchString(readDeploy(t, "k8s/daemonset.yaml")) {
		t.Error("the DaemonSet's first volume is not config: the overlay's patch replaces another")
	}
	if !strings.Contains(redis, "secretKeyRef: {name: ferry-redis, key: password}") {
		t.Error("redis.yaml takes its password from no Secret ferry-redis")
	}
}

// equalTOML compares two decoded TOML documents.
func equalTOML(a, b map[string]any) bool {
	var x, y strings.Builder
	_ = toml.NewEncoder(&x).Encode(a)
	_ = toml.NewEncoder(&y).Encode(b)
	return x.String() == y.String()
}
