package store

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
)

// Modes of the data directory and the files in it: message bodies,
// password hashes and token hashes are nobody else's business.
const (
	dirMode  fs.FileMode = 0o700
	fileMode fs.FileMode = 0o600
)

// prepareDir creates dir with mode 0700, or tightens an existing dir that
// is open to group or others; it refuses to go on when that fails.
func prepareDir(dir string, log *slog.Logger) error {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("data dir %q: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data dir %q: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("data dir %q: not a directory", dir)
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		if err := os.Chmod(dir, m&dirMode); err != nil {
			return fmt.Errorf("data dir %q has mode %04o, open to other users, and cannot be set to %04o: %w", dir, m, m&dirMode, err)
		}
		log.Info("data dir: mode tightened", "dir", dir, "was", fmt.Sprintf("%04o", m), "now", fmt.Sprintf("%04o", m&dirMode))
	}
	return nil
}

// tightenFiles sets every regular file directly in dir that is open to
// group or others to mode 0600 (Badger creates its files 0666 less the
// umask; `tern` sets the umask to 077, and this covers files made before).
func tightenFiles(dir string, log *slog.Logger) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("data dir %q: %w", dir, err)
	}
	n := 0
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return fmt.Errorf("data dir %q: %w", dir, err)
		}
		if fi.Mode().Perm()&0o077 == 0 {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.Chmod(p, fi.Mode().Perm()&fileMode); err != nil {
			return fmt.Errorf("data file %q has mode %04o and cannot be tightened: %w", p, fi.Mode().Perm(), err)
		}
		n++
	}
	if n > 0 {
		log.Info("data dir: file modes tightened to 0600", "dir", dir, "files", n)
	}
	return nil
}
