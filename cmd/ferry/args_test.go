package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ferry-rtc/ferry/auth"
)

// leafCommands lists every command without subcommands, with its path from the app.
func leafCommands(commands []*cli.Command, path []string, visit func(path []string, c *cli.Command)) {
	for _, c := range commands {
		p := append(slices.Clone(path), c.Name)
		if len(c.Subcommands) == 0 {
			visit(p, c)
			continue
		}
		leafCommands(c.Subcommands, p, visit)
	}
}

// findPath finds the command at path in app.
func findPath(app *cli.App, path []string) *cli.Command {
	commands := app.Commands
	var c *cli.Command
	for _, name := range path {
		c = findCommand(commands, name)
		commands = c.Subcommands
	}
	return c
}

// flagValue is a value for f on the command line, and the check that c got it under name.
func flagValue(f cli.Flag) (arg string, got func(c *cli.Context, name string) bool) {
	switch f.(type) {
	case *cli.BoolFlag:
		return "", func(c *cli.Context, name string) bool { return c.Bool(name) }
	case *cli.DurationFlag:
		return "3m7s", func(c *cli.Context, name string) bool { return c.Duration(name) == 187*time.Second }
	case *cli.StringSliceFlag:
		return "v-slice", func(c *cli.Context, name string) bool {
			return slices.Equal(c.StringSlice(name), []string{"v-slice"})
		}
	case *cli.StringFlag:
		return "v-string", func(c *cli.Context, name string) bool { return c.String(name) == "v-string" }
	}
	return "", nil
}

// TestFlagsBeforeAndAfterArguments: every command that takes an argument sees every one of
// its flags, under every name and in every form, whether it comes before or after the
// argument, and sees the argument alone. (urfave/cli v2 alone takes a flag after the
// argument for a second argument: `ferry user add zed -c F` used the default config.)
func TestFlagsBeforeAndAfterArguments(t *testing.T) {
	var tested int
	leafCommands(newApp().Commands, nil, func(path []string, cmd *cli.Command) {
		if cmd.ArgsUsage == "" {
			return
		}
		for _, f := range cmd.Flags {
			value, got := flagValue(f)
			if got == nil {
				t.Errorf("%s: flag %v has a type this test does not know", strings.Join(path, " "), f.Names())
				continue
			}
			for _, name := range f.Names() {
				var forms [][]string
				for _, dash := range []string{"-", "--"} {
					if value == "" {
						forms = append(forms, []string{dash + name})
					} else {
						forms = append(forms, []string{dash + name, value}, []string{dash + name + "=" + value})
					}
				}
				for _, form := range forms {
					for _, after := range []bool{false, true} {
						words := append(slices.Clone(form), "ARG")
						if after {
							words = append([]string{"ARG"}, form...)
						}
						args := append(append([]string{"ferry"}, path...), words...)
						checkFlag(t, args, path, f, got)
						tested++
					}
				}
			}
		}
	})
	if tested < 100 {
		t.Fatalf("only %d command lines tested", tested)
	}
	t.Logf("%d command lines", tested)
}

// checkFlag runs args with the command's action replaced by a check that the argument is
// ARG alone and that f is set, with its value, under each of its names.
func checkFlag(t *testing.T, args, path []string, f cli.Flag, got func(*cli.Context, string) bool) {
	t.Helper()
	app := newApp()
	app.Writer, app.ErrWriter = &bytes.Buffer{}, &bytes.Buffer{}
	ran := false
	findPath(app, path).Action = func(c *cli.Context) error {
		ran = true
		if a := c.Args().Slice(); !slices.Equal(a, []string{"ARG"}) {
			t.Errorf("%q: arguments %q, want [ARG]", args, a)
		}
		for _, name := range f.Names() {
			if !c.IsSet(name) || !got(c, name) {
				t.Errorf("%q: flag %s not set to the value given", args, name)
			}
		}
		return nil
	}
	if err := app.Run(flagsFirst(app, args)); err != nil || !ran {
		t.Errorf("%q: ran %v, %v", args, ran, err)
	}
}

// TestFlagsFirst pins the reordering itself.
func TestFlagsFirst(t *testing.T) {
	app := newApp()
	cases := []struct{ in, want string }{
		{"ferry user add zed -c f.toml --password-stdin", "ferry user add -c f.toml --password-stdin -- zed"},
		{"ferry user add --realm r zed", "ferry user add --realm r -- zed"},
		{"ferry user add zed --realm=r", "ferry user add --realm=r -- zed"},
		{"ferry user add -- -zed -c f", "ferry user add -- -zed -c f"},
		{"ferry user add zed -x", "ferry user add -x -- zed"},    // cli reports the unknown flag
		{"ferry user add zed --realm", "ferry user add --realm"}, // and the missing value
		{"ferry sessions kill 5 -c f --token t", "ferry sessions kill -c f --token t -- 5"},
		{"ferry config check f.toml", "ferry config check -- f.toml"},
		{"ferry user", "ferry user"},
		{"ferry user add zed --generate-bash-completion", "ferry user add zed --generate-bash-completion"},
		{"ferry user add zed -c f - --generate-bash-completion", "ferry user add -c f zed - --generate-bash-completion"},
		{"ferry help user add", "ferry help user add"},
		{"ferry -v", "ferry -v"},
	}
	for _, tc := range cases {
		if got := strings.Join(flagsFirst(app, strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}

// run runs the CLI in process and returns its output and error, as main would print it.
func run(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	app := newApp()
	var out, errOut bytes.Buffer
	app.Reader, app.Writer, app.ErrWriter = strings.NewReader(stdin), &out, &errOut
	err = app.Run(flagsFirst(app, append([]string{"ferry"}, args...)))
	return out.String(), errOut.String(), err
}

// TestConfigFlagAfterName is the reported case: with -c after NAME, user add and user del
// use the config's users file and realm, and sessions kill the config's admin API.
func TestConfigFlagAfterName(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.toml")
	admin, requests := fakeAdmin(t)
	cfg := filepath.Join(dir, "ferry.toml")
	body := fmt.Sprintf("[server]\nrealm = \"example.org\"\n[auth]\nusers_file = %q\n[admin]\nlisten = %q\n", users, admin)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"-c", "--config", "-config"} {
		if _, _, err := run(t, "pw\n", "user", "add", "zed", flag, cfg, "--password-stdin"); err != nil {
			t.Fatalf("user add zed %s F: %v", flag, err)
		}
		got, err := auth.ReadUsers(users)
		if err != nil || len(got) != 1 || got[0].Name != "zed" || got[0].Realm != "example.org" {
			t.Fatalf("user add zed %s F: users file %v, %v; want zed in realm example.org", flag, got, err)
		}
		if _, _, err := run(t, "", "user", "del", "zed", flag, cfg); err != nil {
			t.Fatalf("user del zed %s F: %v", flag, err)
		}
		if got, _ := auth.ReadUsers(users); len(got) != 0 {
			t.Fatalf("user del zed %s F left %v", flag, got)
		}
		if _, _, err := run(t, "", "sessions", "kill", "5", flag, cfg); err != nil {
			t.Fatalf("sessions kill 5 %s F: %v", flag, err)
		}
		select {
		case r := <-requests:
			if r != "DELETE /v1/sessions/5" {
				t.Fatalf("sessions kill 5 %s F: the admin API got %q", flag, r)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("sessions kill 5 %s F did not reach the config's admin API", flag)
		}
	}
}

// fakeAdmin is an admin API that answers every request 204 and reports it.
func fakeAdmin(t *testing.T) (addr string, requests <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan string, 16)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ch <- r.Method + " " + r.URL.Path
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), ch
}

// TestUsageErrorsAreOneLine: a usage error is one line that names the command, and prints
// no help.
func TestUsageErrorsAreOneLine(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"user", "add", "-x"}, "user add: flag provided but not defined: -x (see 'ferry user add --help')"},
		{[]string{"user", "add", "a", "b"}, `user add: want one NAME argument, got also ["b"]`},
		{[]string{"user", "add"}, "user add: want one NAME argument"},
		{[]string{"user", "add", "zed", "--realm"}, "user add: flag needs an argument: -realm (see 'ferry user add --help')"},
		{[]string{"bogus"}, `unknown command "bogus" (see 'ferry --help')`},
		{[]string{"user", "bogus"}, `user: unknown command "bogus" (see 'ferry user --help')`},
		{[]string{"--bogus"}, "flag provided but not defined: -bogus (see 'ferry --help')"},
		{[]string{"sessions", "kill"}, "sessions kill: want one ID argument"},
	}
	for _, tc := range cases {
		out, errOut, err := run(t, "", tc.args...)
		if err == nil || err.Error() != tc.want || strings.Contains(err.Error(), "\n") || out != "" || errOut != "" {
			t.Errorf("ferry %s: error %v, stdout %q, stderr %q; want only the error %q",
				strings.Join(tc.args, " "), err, out, errOut, tc.want)
		}
	}
}

// TestVersion: `ferry version` and `ferry -v` print the same line: the semantic version, the
// commit and Go's version.
func TestVersion(t *testing.T) {
	version, commit = "1.2.3", "abc1234"
	defer func() { version, commit = "dev", "" }()
	var outs []string
	for _, args := range [][]string{{"version"}, {"-v"}, {"--version"}} {
		out, _, err := run(t, "", args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		outs = append(outs, out)
	}
	if !strings.HasPrefix(outs[0], "ferry 1.2.3 (commit abc1234, go") || outs[1] != outs[0] || outs[2] != outs[0] {
		t.Fatalf("version outputs %q", outs)
	}
	if fullVersion() != "1.2.3+abc1234" {
		t.Fatalf("fullVersion %q", fullVersion())
	}
}

// TestHelpNamesTheSFU: the top-level help says what Ferry is, SFU included, and lists the
// commands.
func TestHelpNamesTheSFU(t *testing.T) {
	out, _, err := run(t, "", "--help")
	if err != nil || !strings.Contains(out, "SFU") || !strings.Contains(out, "drain") || !strings.Contains(out, "health") {
		t.Fatalf("ferry --help: %v\n%s", err, out)
	}
	if noArgs, _, _ := run(t, ""); noArgs != out {
		t.Fatalf("ferry without arguments prints %q, not the help", noArgs)
	}
}

// TestCompletionAndMan: the shells' scripts ask ferry for the words that may follow, which
// urfave/cli answers, flags after an argument included; the man page lists the commands
// without the help and hidden ones.
func TestCompletionAndMan(t *testing.T) {
	// urfave/cli reads the word being completed from os.Args.
	defer func(args []string) { os.Args = args }(os.Args)
	os.Args = []string{"ferry", "user", "add", "zed", "-", completionFlag}
	out, _, err := run(t, "", os.Args[1:]...)
	if err != nil || !strings.Contains(out, "--realm") || !strings.Contains(out, "--password-stdin") {
		t.Fatalf("completing a flag after NAME: %v, %q", err, out)
	}
	os.Args = []string{"ferry", "sessions", completionFlag}
	if out, _, err = run(t, "", os.Args[1:]...); err != nil || !strings.Contains(out, "kill") {
		t.Fatalf("completing a subcommand: %v, %q", err, out)
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		out, _, err := run(t, "", "completion", shell)
		if err != nil || !strings.Contains(out, "ferry") || (shell != "fish" && !strings.Contains(out, completionFlag)) ||
			(shell == "fish" && !strings.Contains(out, "complete -c ferry")) {
			t.Errorf("completion %s: %v\n%s", shell, err, out)
		}
	}
	if _, _, err := run(t, "", "completion", "tcsh"); err == nil {
		t.Error("completion tcsh: no error")
	}
	out, _, err = run(t, "", "man")
	if err != nil || !strings.HasPrefix(out, ".nh\n.TH ferry 8") || !strings.Contains(out, "\n.SH drain") ||
		!strings.Contains(out, "\n.SS import") || strings.Contains(out, "\n.SH man") || strings.Contains(out, "Shows a list of commands") {
		t.Fatalf("man: %v\n%s", err, out)
	}
}
