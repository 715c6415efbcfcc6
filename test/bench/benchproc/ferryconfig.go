package benchproc

import "fmt"

// FerrySFU is the Ferry the SFU benchmarks (sfubench, clusterbench) run: one UDP TURN
// listener and the SFU on Host, its relays in MinRelay-MaxRelay, TURN REST credentials
// from TURNSecret and SFU tokens from TokenSecret; no quotas or rate limits (every client
// comes from Host, most with the same token), no self-test, no admin endpoint, a drain that
// ends at once, warnings only; metrics on Metrics when it is not "".
type FerrySFU struct {
	Host                    string
	TURNPort, HTTPPort      int
	MinRelay, MaxRelay      int
	TURNSecret, TokenSecret string
	Metrics                 string
}

// Config is f's config file; a caller appends the sections of its own ([debug], [cluster]).
func (f FerrySFU) Config() string {
	return fmt.Sprintf(`[server]
drain_timeout = "0s"

[[listen]]
proto = "udp"
addr = "%[1]s:%[2]d"

[relay]
bind_ip = %[1]q
public_ip = %[1]q
min_port = %[3]d
max_port = %[4]d
allow_peers = ["%[1]s/32"]

[auth]
users_file = ""
secrets = [%[5]q]

[limits]
allocations_per_user = 0
allocations_total = 0
unauthenticated_per_ip_rate = 0
binding_per_ip_rate = 0

[sfu]
enabled = true
http = "%[1]s:%[6]d"
token_secret = %[7]q
self_test = false
sessions_per_token = 0
sessions_per_ip = 0
feeds_per_token = 0
feeds_per_ip = 0

[metrics]
listen = %[8]q

[admin]
listen = ""

[log]
level = "warn"
`, f.Host, f.TURNPort, f.MinRelay, f.MaxRelay, f.TURNSecret, f.HTTPPort, f.TokenSecret, f.Metrics)
}
