package auth

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// The env variables that turn the test binary into a helper process adding one user.
const (
	helperPathEnv = "FERRY_AUTH_TEST_ADD_PATH"
	helperUserEnv = "FERRY_AUTH_TEST_ADD_USER"
)

// TestAddUserHelperProcess is not a test on its own: TestAddUserConcurrentProcesses runs the
// test binary with only this test selected and the env variables set.
func TestAddUserHelperProcess(t *testing.T) {
	path := os.Getenv(helperPathEnv)
	if path == "" {
		t.Skip("helper process for TestAddUserConcurrentProcesses")
	}
	i, err := strconv.Atoi(os.Getenv(helperUserEnv))
	if err != nil {
		t.Fatal(err)
	}
	if err := AddUser(path, user(fmt.Sprintf("user%02d", i), "ferry.local", "pw")); err != nil {
		t.Fatal(err)
	}
}

// TestAddUserConcurrentProcesses is the `ferry user add` run twice at once case: separate
// processes, so only the flock (not any in-process mutex) keeps updates from being lost.
func TestAddUserConcurrentProcesses(t *testing.T) {
	if os.Getenv(helperPathEnv) != "" {
		t.Skip("in helper process")
	}
	path := filepath.Join(t.TempDir(), "users.toml")
	const n = 10
	cmds := make([]*exec.Cmd, n)
	for i := range cmds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestAddUserHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperPathEnv+"="+path, helperUserEnv+"="+strconv.Itoa(i))
		cmds[i] = cmd
	}
	outs := make([][]byte, n)
	done := make(chan int, n)
	for i, cmd := range cmds {
		go func() {
			outs[i], _ = cmd.CombinedOutput()
			done <- i
		}()
	}
	for range n {
		i := <-done
		if !cmds[i].ProcessState.Success() {
			t.Errorf("helper %d: %v\n%s", i, cmds[i].ProcessState, outs[i])
		}
	}
	checkAllUsers(t, path, n)
}
