package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/cluster"
	"github.com/ferry-rtc/ferry/conf"
)

var (
	usersFileFlag = &cli.StringFlag{
		Name:  "users-file",
		Usage: "users `FILE` (default: [auth] users_file of --config, or of the embedded default)",
	}
	usersRedisFlag = &cli.StringFlag{
		Name:    "users-redis",
		EnvVars: []string{"FERRY_USERS_REDIS"},
		Usage:   "act on the users in the Redis at `URL` instead of a users file; \"cluster\": [cluster] redis of --config (default: [auth] users_redis of --config)",
	}
	realmFlag = &cli.StringFlag{
		Name:  "realm",
		Usage: "`REALM` the key is made for (default: [server] realm of --config, or of the embedded default)",
	}
)

func userCommand() *cli.Command {
	return &cli.Command{
		Name:  "user",
		Usage: "manage long-term credential users (the users file, or Redis with auth.users_redis, stores HA1 keys, not passwords)",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "add a user, or change its password; prints a generated password unless --password-stdin",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{usersFileFlag, usersRedisFlag, realmFlag, configFlag, &cli.BoolFlag{
					Name: "password-stdin", Usage: "read the password from the first line of standard input",
				}},
				Action: userAdd,
			},
			{
				Name:      "del",
				Usage:     "delete a user (in every realm)",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{usersFileFlag, usersRedisFlag, configFlag},
				Action:    userDel,
			},
			{
				Name:   "list",
				Usage:  "list users and their realms (name TAB realm per line, or --json)",
				Flags:  []cli.Flag{usersFileFlag, usersRedisFlag, configFlag, &cli.BoolFlag{Name: "json", Usage: "print a JSON array of {name, realm}"}},
				Action: userList,
			},
		},
	}
}

// userTarget is where `ferry user` acts: a users file, or the users in a Redis.
type userTarget struct {
	path  string             // the users file, when redis is nil
	redis *cluster.UserStore // the shared store, when set
	realm string
}

func (t userTarget) String() string {
	if t.redis != nil {
		return "Redis " + t.redis.String()
	}
	return t.path
}

func (t userTarget) close() {
	if t.redis != nil {
		_ = t.redis.Close()
	}
}

// userTargetOf resolves --users-file, --users-redis and --realm against the config's values:
// a flag wins; without one, auth.users_redis when it is set, else auth.users_file.
func userTargetOf(c *cli.Context) (userTarget, error) {
	cfg, err := loadConfig(c)
	if err != nil {
		return userTarget{}, err
	}
	t := userTarget{path: cfg.Auth.UsersFile, realm: cfg.Server.Realm}
	if c.IsSet(realmFlag.Name) {
		t.realm = c.String(realmFlag.Name)
	}
	url := cfg.Auth.UsersRedisURL(cfg.Cluster)
	switch {
	case c.IsSet(usersFileFlag.Name) && c.IsSet(usersRedisFlag.Name):
		return userTarget{}, errors.New("--users-file and --users-redis name two stores: pass one")
	case c.IsSet(usersFileFlag.Name):
		t.path, url = c.String(usersFileFlag.Name), ""
	case c.IsSet(usersRedisFlag.Name):
		// "cluster" means what it means in the config: the Redis of [cluster] redis.
		flag := c.String(usersRedisFlag.Name)
		url = conf.Auth{UsersRedis: flag}.UsersRedisURL(cfg.Cluster)
		if url == "" && flag == conf.UsersRedisCluster { // an empty value (FERRY_USERS_REDIS=) means the users file
			return userTarget{}, errors.New("--users-redis cluster: [cluster] redis is not set in the config (pass --config, or the Redis URL)")
		}
	}
	if url != "" {
		if t.redis, err = cluster.OpenUserStore(url); err != nil {
			return userTarget{}, err
		}
		return t, nil
	}
	if t.path == "" {
		return userTarget{}, errors.New("no users file: pass --users-file or set [auth] users_file")
	}
	return t, nil
}

// redisTimeout bounds a `ferry user` command's exchanges with Redis.
const redisTimeout = 10 * time.Second

func (t userTarget) set(u auth.User) (bool, error) {
	if t.redis == nil {
		return auth.SetUser(t.path, u)
	}
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	return t.redis.Set(ctx, u)
}

func (t userTarget) delete(name string) error {
	if t.redis == nil {
		return auth.DeleteUser(t.path, name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	return t.redis.Delete(ctx, name)
}

func (t userTarget) list() ([]auth.User, error) {
	if t.redis == nil {
		return auth.ReadUsers(t.path)
	}
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	return t.redis.List(ctx)
}

// noFile reports whether nothing is at path.
func noFile(path string) bool {
	_, err := os.Stat(path)
	return errors.Is(err, fs.ErrNotExist)
}

// oneArg returns the single argument (what names it in errors: NAME, ID). Flags may come
// before or after it: main puts them first (flagsFirst) before cli parses them.
func oneArg(c *cli.Context, what string) (string, error) {
	switch c.NArg() {
	case 0:
		return "", fmt.Errorf("%swant one %s argument", commandPrefix(c), what)
	case 1:
		return c.Args().First(), nil
	}
	return "", fmt.Errorf("%swant one %s argument, got also %q", commandPrefix(c), what, c.Args().Tail())
}

func userAdd(c *cli.Context) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	t, err := userTargetOf(c)
	if err != nil {
		return err
	}
	defer t.close()
	password, generated, err := readPassword(c)
	if err != nil {
		return err
	}
	u := auth.User{Name: name, Realm: t.realm, HA1: hex.EncodeToString(auth.HA1(name, t.realm, password))}
	replaced, err := t.set(u)
	if err != nil {
		return err
	}
	what := "added to"
	if replaced {
		what = "password changed in"
	}
	if generated {
		_, err = fmt.Fprintf(c.App.Writer, "user %s (realm %s) %s %s; password: %s\n", name, t.realm, what, t, password)
	} else {
		_, err = fmt.Fprintf(c.App.Writer, "user %s (realm %s) %s %s\n", name, t.realm, what, t)
	}
	return err
}

// readPassword reads --password-stdin's line, or makes a random password.
func readPassword(c *cli.Context) (password string, generated bool, err error) {
	if !c.Bool("password-stdin") {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b), true, nil
	}
	line, err := bufio.NewReader(c.App.Reader).ReadString('\n')
	password = strings.TrimRight(line, "\r\n")
	if password == "" {
		return "", false, fmt.Errorf("user add: no password on standard input (%v)", err)
	}
	return password, false, nil
}

func userDel(c *cli.Context) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	t, err := userTargetOf(c)
	if err != nil {
		return err
	}
	defer t.close()
	if err := t.delete(name); err != nil {
		return err // names the user, the store and the reason
	}
	_, err = fmt.Fprintf(c.App.Writer, "user %s deleted from %s\n", name, t)
	return err
}

func userList(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("user list: unexpected argument %q", c.Args().First())
	}
	t, err := userTargetOf(c)
	if err != nil {
		return err
	}
	defer t.close()
	users, err := t.list()
	if err != nil {
		return err
	}
	// The note goes to standard error: standard output stays the list, empty here.
	if t.redis == nil && noFile(t.path) {
		fmt.Fprintf(c.App.ErrWriter, "no users file at %s: no users ('ferry user add' creates it)\n", t.path)
	} else if len(users) == 0 {
		fmt.Fprintf(c.App.ErrWriter, "no users in %s\n", t)
	}
	if c.Bool("json") {
		type entry struct {
			Name  string `json:"name"`
			Realm string `json:"realm"`
		}
		out := make([]entry, len(users)) // the HA1 keys stay in the store: each is a password's equal
		for i, u := range users {
			out[i] = entry{u.Name, u.Realm}
		}
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	for _, u := range users {
		if _, err := fmt.Fprintf(c.App.Writer, "%s\t%s\n", u.Name, u.Realm); err != nil {
			return err
		}
	}
	return nil
}
