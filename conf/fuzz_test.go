package conf

import (
	"strings"
	"testing"
)

// FuzzParse: any config file is either refused with an error that starts with the file's
// name (and, where it can, the line and key), or gives a config that validates again.
func FuzzParse(f *testing.F) {
	f.Add([]byte(defaultTOML))
	f.Add([]byte("[server]\nrealm = \"x\"\n[[listen]]\nproto = \"udp\"\naddr = \"127.0.0.1:3478\"\n"))
	f.Add([]byte("[relay]\nmin_port = 60000\nmax_port = 50000\n"))
	f.Add([]byte("[relay]\ndeny_peers = [\"recommended\", \"::ffff:10.0.0.0/104\"]\nallow_peers = [1]\n"))
	f.Add([]byte("[server]\ndrain_timeout = \"-5s\"\nsoftware = \"\\u0000\"\n"))
	f.Add([]byte("[[listen]]\nproto = \"tls\"\naddr = \"0.0.0.0:5349\"\n"))
	f.Add([]byte("[sfu]\ntoken_secret = \"short\"\n[debug]\npprof = \"0.0.0.0:6060\"\n"))
	f.Add([]byte("x = = 1\n[server\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Validate reads the tls and dtls certificate and key files a config names: keep the
		// fuzzer away from device and process files, which can block or never end.
		for _, dir := range []string{"/dev", "/proc", "/sys"} {
			if strings.Contains(string(data), dir) {
				t.Skip("names a special file")
			}
		}
		c, err := Parse("fuzz.toml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.toml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("a parsed config fails validation: %v", err)
		}
	})
}
