package coturn

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// tomlWriter builds the translated config, a key per line with its coturn source.
type tomlWriter struct {
	b       strings.Builder
	section string
}

func (w *tomlWriter) table(name string) {
	if w.section == name {
		return
	}
	w.section = name
	fmt.Fprintf(&w.b, "\n[%s]\n", name)
}

func (w *tomlWriter) key(name, value string, src source) {
	fmt.Fprintf(&w.b, "%s = %s%s\n", name, value, src.comment())
}

// quote writes s as a TOML basic string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func quoteList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// duration writes d the shortest way a Go duration string can.
func duration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return quote(fmt.Sprintf("%dh", d/time.Hour))
	case d%time.Minute == 0:
		return quote(fmt.Sprintf("%dm", d/time.Minute))
	}
	return quote(fmt.Sprintf("%ds", d/time.Second))
}

type listener struct {
	proto, addr string
	src         source
}

// listeners are coturn's: UDP and TCP on listening-port and, with a certificate, TLS and
// DTLS on tls-listening-port, on each listening-ip or, without one, on every address.
func (t *translator) listeners() []listener {
	ips := t.listenIPs
	if len(ips) == 0 {
		ips = []addrOpt{{addr: netip.IPv4Unspecified()}}
	}
	tlsOK := t.cert != "" && t.pkey != ""
	var out []listener
	for _, ip := range ips {
		var ipSrc source
		if ip.opt.Name != "" {
			ipSrc.add(ip.opt)
		}
		add := func(proto string, port int, off bool, src source) {
			if !off {
				out = append(out, listener{proto, netip.AddrPortFrom(ip.addr, uint16(port)).String(),
					append(append(source{}, src...), ipSrc...)})
			}
		}
		add("udp", t.listenPort, t.noUDP, t.listenPortSrc)
		add("tcp", t.listenPort, t.noTCP, t.listenPortSrc)
		add("tls", t.tlsPort, t.noTLS || !tlsOK, t.tlsPortSrc)
		add("dtls", t.tlsPort, t.noDTLS || !tlsOK, t.tlsPortSrc)
	}
	return out
}

// relayAddrs picks Ferry's bind and public address of each family from relay-ip and
// external-ip; Ferry has one of each per family, so further ones are reported.
func (t *translator) relayAddrs() (bind4, public4, bind6, public6 addrOpt) {
	for _, r := range t.relayIPs {
		slot := &bind4
		if r.addr.Is6() {
			slot = &bind6
		}
		if slot.addr.IsValid() {
			t.untranslated(r.opt, "Ferry relays from one address per family: %s is used, %s is not", slot.addr, r.addr)
			continue
		}
		*slot = r
	}
	for _, e := range t.externalIPs {
		pub, bind := &public4, &bind4
		if e.public.addr.Is6() {
			pub, bind = &public6, &bind6
		}
		if pub.addr.IsValid() {
			t.untranslated(e.public.opt, "Ferry advertises one relay address per family: %s is used, %s is not",
				pub.addr, e.public.addr)
			continue
		}
		*pub = e.public
		if e.private.addr.IsValid() {
			switch {
			case !bind.addr.IsValid():
				*bind = e.private
			case bind.addr != e.private.addr:
				t.untranslated(e.public.opt, "maps %s, but the relay address is %s: check relay.bind_ip",
					e.private.addr, bind.addr)
			}
		}
		if e.public.addr.IsUnspecified() {
			t.untranslated(e.public.opt, "an unspecified address cannot be advertised")
			*pub = addrOpt{}
		}
	}
	// coturn relays IPv6 allocations from an IPv6 listening address when no relay-ip says
	// otherwise; Ferry relays IPv6 only with bind_ip6 set.
	if !bind6.addr.IsValid() {
		for _, l := range t.listenIPs {
			if l.addr.Is6() {
				bind6 = addrOpt{addr: netip.IPv6Unspecified(), opt: l.opt}
				break
			}
		}
	}
	return bind4, public4, bind6, public6
}

// write renders the config: only what differs from Ferry's defaults or was set in the
// coturn file, each key with the lines it comes from.
func (t *translator) write(realm string) []byte {
	w := &tomlWriter{}
	fmt.Fprintf(&w.b, "# Ferry config translated from %s by 'ferry config import'.\n", t.s.Source)
	w.b.WriteString("# Each key names the coturn options it comes from; 'ferry config default' documents every key.\n")
	w.b.WriteString("# Keys not written here keep Ferry's defaults.\n")

	w.table("server")
	w.key("realm", quote(realm), t.realmSrc)
	if t.noSoftware {
		w.key("software", quote(""), t.softwareSrc)
	}

	for _, l := range t.listeners() {
		w.section = "listen"
		fmt.Fprintf(&w.b, "\n[[listen]]%s\nproto = %s\naddr = %s\n", l.src.comment(), quote(l.proto), quote(l.addr))
		if l.proto == "tls" || l.proto == "dtls" {
			w.key("cert", quote(t.cert), t.certSrc)
			w.key("key", quote(t.pkey), nil)
		}
	}

	bind4, public4, bind6, public6 := t.relayAddrs()
	w.table("relay")
	if bind4.addr.IsValid() {
		w.key("bind_ip", quote(bind4.addr.String()), source{}.with(bind4.opt))
	}
	if public4.addr.IsValid() {
		w.key("public_ip", quote(public4.addr.String()), source{}.with(public4.opt))
	}
	if bind6.addr.IsValid() {
		w.key("bind_ip6", quote(bind6.addr.String()), source{}.with(bind6.opt))
	}
	if public6.addr.IsValid() {
		w.key("public_ip6", quote(public6.addr.String()), source{}.with(public6.opt))
	}
	w.key("min_port", strconv.Itoa(t.minPort), t.minPortSrc)
	w.key("max_port", strconv.Itoa(t.maxPort), t.maxPortSrc)
	w.key("deny_peers", quoteList(append([]string{"recommended"}, t.deny...)), t.denySrc)
	if len(t.allow) > 0 {
		w.key("allow_peers", quoteList(t.allow), t.allowSrc)
	}

	if len(t.res.Users) > 0 || len(t.secrets) > 0 {
		w.table("auth")
		if len(t.res.Users) > 0 {
			var src source
			for _, u := range t.users {
				src = src.with(u.opt)
			}
			w.key("users_file", quote(t.s.UsersFile), src)
		}
		if len(t.secrets) > 0 {
			w.key("secrets_file", quote(t.s.SecretsFile), t.secretSrc)
		}
	}

	if t.userQuotaSet || t.totalQuotaSet || t.lifetime > 0 || t.allocTimeout > 0 {
		w.table("limits")
		if t.userQuotaSet {
			w.key("allocations_per_user", strconv.Itoa(t.userQuota), t.userQuotaSrc)
		}
		if t.totalQuotaSet {
			w.key("allocations_total", strconv.Itoa(t.totalQuota), t.totalQuotaSrc)
		}
		if t.lifetime > 0 {
			w.key("max_allocation_lifetime", duration(t.lifetime), t.lifetimeSrc)
		}
		if t.allocTimeout > 0 {
			w.key("allocate_timeout", duration(t.allocTimeout), t.allocTimeoutSrc)
		}
	}

	// coturn has no SFU: Ferry's stays off until configured (see [sfu] in 'ferry config default').
	w.table("sfu")
	w.b.WriteString("enabled = false  # coturn has none; 'ferry config default' shows how to run Ferry's\n")

	if t.prometheus {
		addr := t.promAddr
		if addr == "" {
			addr = "0.0.0.0" // coturn's exporter listens on every address
		}
		w.table("metrics")
		w.key("listen", quote(netip.AddrPortFrom(netip.MustParseAddr(addr), uint16(t.promPort)).String()), t.promSrc)
	}
	return []byte(w.b.String())
}

func (s source) with(o Option) source {
	if o.Name == "" {
		return s
	}
	s.add(o)
	return s
}

// peerRange reads denied-peer-ip and allowed-peer-ip: an address, a CIDR, or coturn's
// range "first-last", which becomes the CIDRs that cover exactly it.
func (t *translator) peerRange(o Option) ([]string, bool) {
	v := strings.TrimSpace(o.Value)
	if first, last, ok := strings.Cut(v, "-"); ok {
		a, errA := netip.ParseAddr(strings.TrimSpace(first))
		b, errB := netip.ParseAddr(strings.TrimSpace(last))
		if errA != nil || errB != nil || a.Is4() != b.Is4() || b.Less(a) || a.Zone() != "" || b.Zone() != "" {
			t.untranslated(o, "%q is not a range of two addresses of one family, the first lower", v)
			return nil, false
		}
		// An IPv4-mapped range stays one: it names the mapped spelling of peer addresses,
		// which Ferry's rules match as written (the IPv4 rules already cover the addresses).
		return rangeCIDRs(a, b), true
	}
	if p, err := netip.ParsePrefix(v); err == nil {
		return []string{p.Masked().String()}, true
	}
	if ip, err := netip.ParseAddr(v); err == nil && ip.Zone() == "" {
		return []string{ip.String()}, true
	}
	t.untranslated(o, "%q is not an address, a CIDR or a range first-last", v)
	return nil, false
}

// rangeCIDRs are the fewest prefixes that cover first..last exactly.
func rangeCIDRs(first, last netip.Addr) []string {
	var out []string
	for {
		// The longest prefix starting at first that neither starts earlier nor ends past last.
		bitsLen := first.BitLen()
		p := netip.PrefixFrom(first, bitsLen)
		for l := bitsLen - 1; l >= 0; l-- {
			q := netip.PrefixFrom(first, l).Masked()
			if q.Addr() != first || lastOf(q).Compare(last) > 0 {
				break
			}
			p = q
		}
		if p.Bits() == bitsLen {
			out = append(out, first.String())
		} else {
			out = append(out, p.String())
		}
		end := lastOf(p)
		if end.Compare(last) >= 0 {
			return out
		}
		first = end.Next()
	}
}

// lastOf is the last address of p.
func lastOf(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As16()
	host := p.Addr().BitLen() - p.Bits()
	for i := 15; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		a[i] |= byte(1<<n - 1)
		host -= n
	}
	addr := netip.AddrFrom16(a)
	if p.Addr().Is4() {
		return addr.Unmap()
	}
	return addr
}
