package auth

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
)

// ReadSecrets reads a secrets file: one TURN REST API secret per line; blank lines and
// lines starting with # are skipped, and surrounding white space is trimmed. A missing
// file is an error: a configured secrets file that is not there means credentials that
// should work would not.
func ReadSecrets(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: secrets file: %w", err)
	}
	var secrets []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		secrets = append(secrets, string(line))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("auth: secrets file %s: %w", path, err)
	}
	return secrets, nil
}
