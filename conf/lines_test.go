package conf

import (
	"reflect"
	"testing"
)

func TestIndexLines(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  map[string]int
	}{
		{"empty", "", map[string]int{}},
		{
			"tables and keys",
			"# comment\ntop = 1\n\n[server]\nrealm = \"x\" # trailing\n  software = \"y\"\n[relay]\nmin_port=1\n",
			map[string]int{"top": 2, "server": 4, "server.realm": 5, "server.software": 6, "relay": 7, "relay.min_port": 8},
		},
		{
			"array tables are numbered from 0",
			"[[listen]]\nproto = \"udp\"\n\n[[listen]] # second\nproto = \"tcp\"\naddr = \"x\"\n",
			map[string]int{"listen[0]": 1, "listen[0].proto": 2, "listen[1]": 4, "listen[1].proto": 5, "listen[1].addr": 6},
		},
		{
			"a table after array tables",
			"[[a]]\nx = 1\n[[a]]\n[a.b]\ny = 2\n[c]\nz = 3\n",
			map[string]int{"a[0]": 1, "a[0].x": 2, "a[1]": 3, "a[1].b": 4, "a[1].b.y": 5, "c": 6, "c.z": 7},
		},
		{
			"dotted and quoted keys",
			"relay.min_port = 1\n[auth]\n\"users_file\" = 'x'\n'secrets' = []\n a . b = 2\n",
			map[string]int{"relay.min_port": 1, "auth": 2, "auth.users_file": 3, "auth.secrets": 4, "auth.a.b": 5},
		},
		{
			"multi-line array",
			"[relay]\ndeny_peers = [\n  \"recommended\", # [x = 1\n  \"a]\",\n  'b[',\n]\nallow_peers = [[1], [\n2]]\nmax_port = 3\n",
			map[string]int{"relay": 1, "relay.deny_peers": 2, "relay.allow_peers": 7, "relay.max_port": 9},
		},
		{
			"multi-line strings",
			"a = \"\"\"\nb = 1\n[t]\n\"\"\"\nc = '''\nd = 2\n''' # e = 3\nf = \"\"\"one line\"\"\"\ng = 4\n",
			map[string]int{"a": 1, "c": 5, "f": 8, "g": 9},
		},
		{
			"inline table",
			"relay = { min_port = 1,\n max_port = 2 }\nx = 1\n",
			map[string]int{"relay": 1, "x": 3},
		},
		{
			"strings with quotes and hashes",
			"a = \"x\\\"[\" # [\nb = 'c#[' \nc = 3\n",
			map[string]int{"a": 1, "b": 2, "c": 3},
		},
		{
			"CRLF",
			"[server]\r\nrealm = \"x\"\r\n",
			map[string]int{"server": 1, "server.realm": 2},
		},
		{
			"first occurrence wins",
			"[t]\na = 1\n[t]\na = 2\n",
			map[string]int{"t": 1, "t.a": 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := indexLines([]byte(tt.input)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("indexLines =\n  %v\nwant\n  %v", got, tt.want)
			}
		})
	}
}
