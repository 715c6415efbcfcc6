package test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// procStats is what the kernel says a process holds: resident memory and open files.
type procStats struct {
	rssKiB int64
	fds    int
}

func (p procStats) String() string {
	return fmt.Sprintf("RSS %.1f MiB, %d fds", float64(p.rssKiB)/1024, p.fds)
}

// stats reads the ferry process's /proc entries.
func (f *ferry) stats(t *testing.T) procStats {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d", f.cmd.Process.Pid)
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		t.Fatalf("ferry's /proc status: %v", err)
	}
	var st procStats
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			st.rssKiB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	fds, err := os.ReadDir(dir + "/fd")
	if err != nil {
		t.Fatalf("ferry's open files: %v", err)
	}
	st.fds = len(fds)
	return st
}
