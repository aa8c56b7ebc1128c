package spec

import (
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// MaxID is the largest uid or gid a spec may name (the kernel's is
// 2^32-2; -1 means "unchanged" to chown).
const MaxID = 1<<32 - 2

// ParseUser parses a numeric "uid[:gid]", as spec.agent.user and a file's
// owner are written. The gid is the uid when left out, so that "1000"
// means 1000:1000 on every backend (an engine would otherwise give the
// user the image's group for it, or root's).
func ParseUser(s string) (uid, gid int, err error) {
	u, g, hasGID := strings.Cut(s, ":")
	if uid, err = parseID(u); err != nil {
		return 0, 0, fmt.Errorf("%s is not a numeric uid[:gid] (e.g. \"1000\" or \"1000:1000\"): %w", quote(s), err)
	}
	gid = uid
	if hasGID {
		if gid, err = parseID(g); err != nil {
			return 0, 0, fmt.Errorf("%s is not a numeric uid[:gid] (e.g. \"1000\" or \"1000:1000\"): %w", quote(s), err)
		}
	}
	return uid, gid, nil
}

func parseID(s string) (int, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%s is not a number; user names are not supported, as the agent's image may not know them", quote(s))
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > MaxID {
		return 0, fmt.Errorf("%s is above the largest id, %d", s, MaxID)
	}
	return int(n), nil
}

// ParseMode parses a file's mode: an octal string of permission bits such
// as "0600" or "644".
func ParseMode(s string) (fs.FileMode, error) {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o777 {
		return 0, fmt.Errorf("%s is not an octal file mode between 0000 and 0777 (e.g. \"0600\")", quote(s))
	}
	return fs.FileMode(n), nil
}
