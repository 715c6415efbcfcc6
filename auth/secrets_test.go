package auth

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestReadSecrets(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rest-secrets")
	if err := os.WriteFile(path, []byte("# rotated 2026-11-01\nnew-secret\n\n  old-secret \r\n#old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSecrets(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"new-secret", "old-secret"}; !slices.Equal(got, want) {
		t.Errorf("ReadSecrets = %q, want %q", got, want)
	}
	if _, err := ReadSecrets(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing secrets file gave no error")
	}
}
