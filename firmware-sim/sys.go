package firmwaresim

import (
	"fmt"
	"net"
	"strings"
	"syscall"
)

// RaiseFDLimit raises the open-file limit towards want (the hard limit
// too when the process may) and returns the soft limit in effect.
func RaiseFDLimit(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	if lim.Max < want {
		raised := syscall.Rlimit{Cur: want, Max: want}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			return want, nil
		}
		want = lim.Max // not privileged: the hard limit is the ceiling
	}
	lim.Cur = want
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	return lim.Cur, nil
}

// ParseSourceIPs parses "127.0.0.2-127.0.0.20" or a comma list of IPv4
// loopback addresses.
func ParseSourceIPs(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var out []string
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a := net.ParseIP(lo).To4()
		if a == nil || a[0] != 127 {
			return nil, fmt.Errorf("source address %q is not IPv4 loopback", lo)
		}
		if !isRange {
			out = append(out, a.String())
			continue
		}
		b := net.ParseIP(hi).To4()
		if b == nil || b[0] != 127 || a[0] != b[0] || a[1] != b[1] || a[2] != b[2] || b[3] < a[3] {
			return nil, fmt.Errorf("source range %q must be within one /24 of 127/8", part)
		}
		for x := int(a[3]); x <= int(b[3]); x++ {
			out = append(out, net.IPv4(a[0], a[1], a[2], byte(x)).String())
		}
	}
	return out, nil
}
