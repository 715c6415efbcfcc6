package coturn

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/conf"
)

// Settings are what the translation needs besides the coturn file.
type Settings struct {
	Source      string // the coturn file's name, for the header of the TOML
	Dir         string // the directory relative cert and pkey paths are relative to (the coturn file's)
	Realm       string // overrides realm=, and names the realm when the file has none
	UsersFile   string // auth.users_file when the file has users: where the caller writes Users
	SecretsFile string // auth.secrets_file when the file has secrets: where the caller writes Secrets
}

// Issue is something about one coturn line that the user should know.
type Issue struct {
	Line   int
	Option string
	Text   string
}

func (i Issue) String() string {
	if i.Line == 0 { // about the file as a whole: an option it leaves unset
		return fmt.Sprintf("%s: %s", i.Option, i.Text)
	}
	return fmt.Sprintf("line %d: %s: %s", i.Line, i.Option, i.Text)
}

// Result is a translated config.
type Result struct {
	TOML    []byte      // a Ferry config that conf.Parse accepts
	Users   []auth.User // the user= accounts, as HA1 keys in the config's realm
	Secrets []string    // the static-auth-secret values, for the secrets file
	// Untranslated are options Ferry has no equivalent for, or whose value it cannot use:
	// what coturn did with them, Ferry will not.
	Untranslated []Issue
	// Notes are options that need nothing in Ferry (it behaves so already, or the option
	// is about coturn's own process), and differences in what was translated.
	Notes []Issue
}

// Translate turns the options of a coturn config into a Ferry config.
func Translate(opts []Option, s Settings) (*Result, error) {
	t := &translator{s: s, res: &Result{}, listenPort: 3478, tlsPort: 5349, promPort: 9641}
	for _, o := range opts {
		t.option(o)
	}
	if err := t.finish(); err != nil {
		return nil, err
	}
	return t.res, nil
}

// source names the coturn lines a value came from, for the comment beside its key.
type source []Option

func (s *source) add(o Option) { *s = append(*s, Option{Line: o.Line, Name: o.Name}) }

// comment is "  # name (line 3), other (lines 5-9, 12)": the options in order of first
// appearance, each with its lines, consecutive ones as a range.
func (s source) comment() string {
	if len(s) == 0 {
		return ""
	}
	var names []string
	lines := map[string][]int{}
	for _, o := range s {
		if _, ok := lines[o.Name]; !ok {
			names = append(names, o.Name)
		}
		lines[o.Name] = append(lines[o.Name], o.Line)
	}
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = name + " (" + lineList(lines[name]) + ")"
	}
	return "  # " + strings.Join(parts, ", ")
}

// lineList writes line numbers as "line 3" or "lines 3-5, 9".
func lineList(ls []int) string {
	if len(ls) == 0 {
		return "command line"
	}
	var runs []string
	for i := 0; i < len(ls); {
		j := i
		for j+1 < len(ls) && ls[j+1] == ls[j]+1 {
			j++
		}
		if j > i {
			runs = append(runs, fmt.Sprintf("%d-%d", ls[i], ls[j]))
		} else {
			runs = append(runs, strconv.Itoa(ls[i]))
		}
		i = j + 1
	}
	if len(ls) == 1 {
		return "line " + runs[0]
	}
	return "lines " + strings.Join(runs, ", ")
}

type addrOpt struct {
	addr netip.Addr
	opt  Option
}

type userOpt struct {
	name, secret string
	opt          Option
}

type translator struct {
	s   Settings
	res *Result

	realm                        string
	realmSrc                     source
	listenPort, tlsPort          int
	listenPortSrc, tlsPortSrc    source
	listenIPs                    []addrOpt
	relayIPs                     []addrOpt
	externalIPs                  []struct{ public, private addrOpt }
	cert, pkey                   string
	certSrc                      source
	noUDP, noTCP, noTLS, noDTLS  bool
	protoSrc                     source
	minPort, maxPort             int
	minPortSrc, maxPortSrc       source
	users                        []userOpt
	secrets                      []string
	secretSrc                    source
	useAuthSecret, ltCredMech    *Option
	userQuota, totalQuota        int
	userQuotaSet, totalQuotaSet  bool
	userQuotaSrc, totalQuotaSrc  source
	deny, allow                  []string
	denySrc, allowSrc            source
	lifetime, allocTimeout       time.Duration
	lifetimeSrc, allocTimeoutSrc source
	prometheus                   bool
	promPort                     int
	promAddr                     string
	promSrc                      source
	noSoftware                   bool
	softwareSrc                  source
	userdbSeen                   bool
}

func (t *translator) untranslated(o Option, format string, args ...any) {
	t.res.Untranslated = append(t.res.Untranslated, Issue{o.Line, o.Name, fmt.Sprintf(format, args...)})
}

func (t *translator) note(o Option, format string, args ...any) {
	t.res.Notes = append(t.res.Notes, Issue{o.Line, o.Name, fmt.Sprintf(format, args...)})
}

// flag reads a boolean option; a value that is not a boolean is reported, and false.
func (t *translator) flag(o Option) bool {
	v, ok := boolValue(o.Value)
	if !ok {
		t.untranslated(o, "%q is not a boolean", o.Value)
	}
	return v
}

// number reads an integer option in [lo, hi]; ok false (and reported) otherwise.
func (t *translator) number(o Option, lo, hi int) (int, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(o.Value))
	if err != nil || n < lo || n > hi {
		t.untranslated(o, "%q is not a whole number from %d to %d", o.Value, lo, hi)
		return 0, false
	}
	return n, true
}

// ip reads an IP address option; ok false (and reported) otherwise.
func (t *translator) ip(o Option, s string) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(strings.Trim(strings.TrimSpace(s), "[]"))
	if err != nil || ip.Zone() != "" {
		t.untranslated(o, "%q is not an IP address (Ferry takes IP literals only)", s)
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

func (t *translator) option(o Option) {
	if h, ok := handlers[o.Name]; ok {
		h(t, o)
		return
	}
	if why, ok := ignored[o.Name]; ok {
		t.note(o, "%s", why)
		return
	}
	if why, ok := unsupported[o.Name]; ok {
		t.untranslated(o, "%s", why)
		return
	}
	t.untranslated(o, "not a coturn 4.6 option that this translation knows")
}

var handlers = map[string]func(*translator, Option){
	"realm": func(t *translator, o Option) {
		t.realm = strings.TrimSpace(o.Value)
		t.realmSrc = nil
		t.realmSrc.add(o)
	},
	"listening-port": func(t *translator, o Option) {
		if n, ok := t.number(o, 1, 65535); ok {
			t.listenPort, t.listenPortSrc = n, nil
			t.listenPortSrc.add(o)
		}
	},
	"tls-listening-port": func(t *translator, o Option) {
		if n, ok := t.number(o, 1, 65535); ok {
			t.tlsPort, t.tlsPortSrc = n, nil
			t.tlsPortSrc.add(o)
		}
	},
	"listening-ip": func(t *translator, o Option) {
		if ip, ok := t.ip(o, o.Value); ok {
			t.listenIPs = append(t.listenIPs, addrOpt{ip, o})
		}
	},
	"relay-ip": func(t *translator, o Option) {
		if ip, ok := t.ip(o, o.Value); ok {
			t.relayIPs = append(t.relayIPs, addrOpt{ip, o})
		}
	},
	"external-ip": func(t *translator, o Option) {
		public, private, mapped := strings.Cut(strings.TrimSpace(o.Value), "/")
		pub, ok := t.ip(o, public)
		if !ok {
			return
		}
		e := struct{ public, private addrOpt }{public: addrOpt{pub, o}}
		if mapped {
			priv, ok := t.ip(o, private)
			if !ok {
				return
			}
			if priv.Is4() != pub.Is4() {
				t.untranslated(o, "%s and %s are of different families", pub, priv)
				return
			}
			e.private = addrOpt{priv, o}
		}
		t.externalIPs = append(t.externalIPs, e)
	},
	"min-port": func(t *translator, o Option) {
		if n, ok := t.number(o, 1, 65535); ok {
			t.minPort, t.minPortSrc = n, nil
			t.minPortSrc.add(o)
		}
	},
	"max-port": func(t *translator, o Option) {
		if n, ok := t.number(o, 1, 65535); ok {
			t.maxPort, t.maxPortSrc = n, nil
			t.maxPortSrc.add(o)
		}
	},
	"cert": func(t *translator, o Option) {
		t.cert = t.path(o.Value)
		t.certSrc.add(o)
	},
	"pkey": func(t *translator, o Option) {
		t.pkey = t.path(o.Value)
		t.certSrc.add(o)
	},
	"no-udp":  func(t *translator, o Option) { t.noUDP = t.protoFlag(o) },
	"no-tcp":  func(t *translator, o Option) { t.noTCP = t.protoFlag(o) },
	"no-tls":  func(t *translator, o Option) { t.noTLS = t.protoFlag(o) },
	"no-dtls": func(t *translator, o Option) { t.noDTLS = t.protoFlag(o) },
	"user": func(t *translator, o Option) {
		name, secret, ok := strings.Cut(o.Value, ":")
		if !ok || name == "" || secret == "" {
			t.untranslated(o, "want name:password or name:0xKEY")
			return
		}
		t.users = append(t.users, userOpt{name, secret, o})
	},
	"lt-cred-mech": func(t *translator, o Option) {
		if t.flag(o) {
			t.ltCredMech = &o
		}
	},
	"use-auth-secret": func(t *translator, o Option) {
		if t.flag(o) {
			t.useAuthSecret = &o
		}
	},
	"static-auth-secret": func(t *translator, o Option) {
		if s := strings.TrimSpace(o.Value); s != "" {
			t.secrets = append(t.secrets, s)
			t.secretSrc.add(o)
		}
	},
	"userdb": userdb,
	"db":     userdb,
	"user-quota": func(t *translator, o Option) {
		if n, ok := t.number(o, 0, 1<<30); ok {
			t.userQuota, t.userQuotaSet, t.userQuotaSrc = n, true, nil
			t.userQuotaSrc.add(o)
		}
	},
	"total-quota": func(t *translator, o Option) {
		if n, ok := t.number(o, 0, 1<<30); ok {
			t.totalQuota, t.totalQuotaSet, t.totalQuotaSrc = n, true, nil
			t.totalQuotaSrc.add(o)
		}
	},
	"denied-peer-ip": func(t *translator, o Option) {
		if peers, ok := t.peerRange(o); ok {
			t.deny = append(t.deny, peers...)
			t.denySrc.add(o)
		}
	},
	"allowed-peer-ip": func(t *translator, o Option) {
		if peers, ok := t.peerRange(o); ok {
			t.allow = append(t.allow, peers...)
			t.allowSrc.add(o)
		}
	},
	"allow-loopback-peers": func(t *translator, o Option) {
		if t.flag(o) {
			t.allow = append(t.allow, "127.0.0.0/8", "::1")
			t.allowSrc.add(o)
			t.note(o, "translated to allow_peers 127.0.0.0/8 and ::1: relaying to this host's own services, for tests only")
		}
	},
	"max-allocate-lifetime": func(t *translator, o Option) {
		n, ok := t.number(o, 1, 1<<30)
		if !ok {
			return
		}
		d := time.Duration(n) * time.Second
		if d > conf.MaxAllocationLifetime {
			t.note(o, "%s is more than Ferry grants (%s, so that a vanished client's port and quota come back): limits.max_allocation_lifetime is %s",
				d, conf.MaxAllocationLifetime, conf.MaxAllocationLifetime)
			d = conf.MaxAllocationLifetime
		}
		t.lifetime, t.lifetimeSrc = d, nil
		t.lifetimeSrc.add(o)
	},
	"max-allocate-timeout": func(t *translator, o Option) {
		if n, ok := t.number(o, 1, 1<<30); ok {
			t.allocTimeout, t.allocTimeoutSrc = time.Duration(n)*time.Second, nil
			t.allocTimeoutSrc.add(o)
		}
	},
	"prometheus": func(t *translator, o Option) {
		if t.flag(o) {
			t.prometheus = true
			t.promSrc.add(o)
		}
	},
	"prometheus-port": func(t *translator, o Option) {
		if n, ok := t.number(o, 1, 65535); ok {
			t.promPort = n
			t.promSrc.add(o)
		}
	},
	"prometheus-address": func(t *translator, o Option) {
		if ip, ok := t.ip(o, o.Value); ok {
			t.promAddr = ip.String()
			t.promSrc.add(o)
		}
	},
	"no-software-attribute": func(t *translator, o Option) {
		if t.flag(o) {
			t.noSoftware = true
			t.softwareSrc.add(o)
		}
	},
	"no-auth": func(t *translator, o Option) {
		if t.flag(o) {
			t.untranslated(o, "Ferry has no anonymous TURN: every allocation needs a user or a TURN REST credential")
		}
	},
	"rest-api-separator": func(t *translator, o Option) {
		if strings.TrimSpace(o.Value) != ":" {
			t.untranslated(o, "Ferry's TURN REST usernames are EXPIRY:USER, with ':' only")
			return
		}
		t.note(o, "':' is Ferry's separator too")
	},
}

// protoFlag reads no-udp, no-tcp, no-tls and no-dtls.
func (t *translator) protoFlag(o Option) bool {
	v := t.flag(o)
	if v {
		t.protoSrc.add(o)
	}
	return v
}

// path makes a cert or pkey path absolute: turnserver takes a relative one from its
// config file's directory.
func (t *translator) path(p string) string {
	p = strings.TrimSpace(p)
	if p == "" || filepath.IsAbs(p) || t.s.Dir == "" {
		return p
	}
	return filepath.Join(t.s.Dir, p)
}

func userdb(t *translator, o Option) {
	t.userdbSeen = true
	db := strings.TrimSpace(o.Value)
	t.untranslated(o, "Ferry does not read coturn's SQLite database %[1]s. 'turnadmin -l -b %[1]s' lists its users "+
		"and 'turnadmin -S -b %[1]s' its secrets, but turnadmin prints no keys: export the users (with their HA1 keys "+
		"and realms) into Ferry's users file with\n"+
		`    sqlite3 %[1]s "SELECT printf('[[user]]%%sname = %%s%%srealm = %%s%%sha1 = %%s%%s', char(10), json_quote(name), `+
		`char(10), json_quote(realm), char(10), json_quote(hmackey), char(10)) FROM turnusers_lt" >> USERS_FILE`+"\n"+
		"  and its TURN REST secrets into a secrets file with\n"+
		`    sqlite3 %[1]s "SELECT value FROM turn_secret" >> SECRETS_FILE`+"\n"+
		"  then check the result with 'ferry user list' and 'ferry config check'", db)
}

// finish checks what the options say together and writes the config.
func (t *translator) finish() error {
	realm := t.realm
	if t.s.Realm != "" {
		realm = t.s.Realm
		t.realmSrc = nil
	}
	if realm == "" {
		realm = conf.Default().Server.Realm
		t.res.Notes = append(t.res.Notes, Issue{0, "realm", fmt.Sprintf("not set: coturn then uses the host's domain "+
			"name; the Ferry config keeps its default, %q (pass --realm to choose one)", realm)})
	}
	t.translateUsers(realm)
	if t.minPort == 0 {
		t.minPort = conf.Default().Relay.MinPort
	}
	if t.maxPort == 0 {
		t.maxPort = conf.Default().Relay.MaxPort
	}
	if t.minPort > t.maxPort {
		return fmt.Errorf("%s is above %s: coturn refuses such a range too", t.minPortSrc.first("min-port"),
			t.maxPortSrc.first("max-port"))
	}
	t.credentialNotes()
	t.defaultNotes()
	toml := t.write(realm)
	if _, err := conf.Parse("(translated)", toml); err != nil {
		// Every value was checked above: this is a bug of the translation.
		return fmt.Errorf("the translated config is not valid: %w\n%s", err, toml)
	}
	t.res.TOML = toml
	slices.SortStableFunc(t.res.Untranslated, func(a, b Issue) int { return a.Line - b.Line })
	slices.SortStableFunc(t.res.Notes, func(a, b Issue) int { return a.Line - b.Line })
	return nil
}

func (s source) first(fallback string) string {
	if len(s) == 0 {
		return fallback
	}
	return fmt.Sprintf("%s (line %d)", s[0].Name, s[0].Line)
}

// translateUsers makes the user= accounts HA1 keys in realm.
func (t *translator) translateUsers(realm string) {
	for _, u := range t.users {
		var ha1 string
		if key, ok := strings.CutPrefix(u.secret, "0x"); ok {
			if b, err := hex.DecodeString(key); err != nil || len(b) != 16 {
				t.untranslated(u.opt, "the key of user %q is not 32 hex digits (an MD5 HA1 key, as turnadmin -k makes)", u.name)
				continue
			}
			if t.realm == "" && t.s.Realm == "" {
				t.untranslated(u.opt, "the key of user %q was made for coturn's realm, which this file does not name "+
					"(coturn used the host's domain name): import again with --realm", u.name)
				continue
			}
			ha1 = strings.ToLower(key)
		} else {
			ha1 = hex.EncodeToString(auth.HA1(u.name, realm, u.secret))
		}
		user := auth.User{Name: u.name, Realm: realm, HA1: ha1}
		if i := slices.IndexFunc(t.res.Users, func(e auth.User) bool { return e.Name == u.name }); i >= 0 {
			t.res.Users[i] = user // turnserver keeps the last one too
			t.note(u.opt, "user %q again: this entry replaces the earlier one", u.name)
			continue
		}
		if strings.ContainsAny(u.name, "\x00\n\r\t") {
			t.untranslated(u.opt, "user name %q has control characters", u.name)
			continue
		}
		t.res.Users = append(t.res.Users, user)
	}
}

// credentialNotes explains the credentials the translation arrives at.
func (t *translator) credentialNotes() {
	t.res.Secrets = t.secrets
	if t.useAuthSecret != nil && len(t.secrets) == 0 && !t.userdbSeen {
		t.untranslated(*t.useAuthSecret, "no static-auth-secret: coturn then reads its TURN REST secrets from its "+
			"database (turn_secret); put them in auth.secrets or a secrets file")
	}
	if len(t.secrets) > 0 && len(t.res.Users) > 0 {
		t.res.Notes = append(t.res.Notes, Issue{t.useAuthSecretLine(), "use-auth-secret", "coturn takes either " +
			"TURN REST credentials or static users; Ferry takes both at once, so both sets work"})
	}
	if t.ltCredMech != nil {
		t.note(*t.ltCredMech, "Ferry always uses the long-term credential mechanism")
	}
	if len(t.secrets) == 0 && len(t.res.Users) == 0 && !t.userdbSeen {
		t.res.Notes = append(t.res.Notes, Issue{0, "credentials", "the file has no users and no secrets: Ferry " +
			"then generates a TURN REST secret at each start and prints a credential; add users with " +
			"'ferry user add' or a secret in auth.secrets"})
	}
}

func (t *translator) useAuthSecretLine() int {
	if t.useAuthSecret != nil {
		return t.useAuthSecret.Line
	}
	return 0
}

// defaultNotes names what differs when the coturn file leaves an option at coturn's default.
func (t *translator) defaultNotes() {
	add := func(option, text string) {
		t.res.Notes = append(t.res.Notes, Issue{0, option, text})
	}
	if len(t.listenIPs) == 0 {
		add("listening-ip", "not set: coturn listens on every IPv4 and IPv6 address; the Ferry config listens on "+
			"0.0.0.0 (IPv4): add [[listen]] tables on [::] for IPv6 clients")
	}
	if (t.cert == "") != (t.pkey == "") || (t.cert == "" && (!t.noTLS || !t.noDTLS)) {
		add("cert", "no cert and pkey: no TLS or DTLS listener (coturn too runs none without a certificate)")
	}
	if t.cert != "" && t.pkey != "" && (!t.noTLS || !t.noDTLS) {
		add("cert", "turns: clients check the certificate against the host in the URI: set server.name to the "+
			"name it is issued to, so the URIs Ferry hands out carry it")
	}
	if !t.userQuotaSet {
		add("user-quota", fmt.Sprintf("not set: coturn allows any number of allocations per user; Ferry allows %d "+
			"(limits.allocations_per_user; 0 = no limit)", conf.Default().Limits.AllocationsPerUser))
	}
	if len(t.allow) == 0 {
		add("denied-peer-ip", "coturn relays to private and other special addresses unless denied-peer-ip says "+
			"otherwise; Ferry denies them (relay.deny_peers = [\"recommended\"]): list in relay.allow_peers "+
			"the private networks your peers are on, if any")
	}
}
