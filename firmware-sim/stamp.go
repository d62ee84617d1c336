package firmwaresim

import (
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"time"
)

// errStamp is returned for a body or payload that carries no valid stamp.
var errStamp = errors.New("firmwaresim: no simulator stamp")

// Stamp identifies a simulated message inside its body, so a receiver can
// account for it and time it without any shared state.
type Stamp struct {
	// Run tells this run's messages from those of earlier runs of the same
	// devices file (text bodies only; [0-9a-z]*, no dots).
	Run    string
	Sender int
	N      uint64
	SentAt time.Time
}

// TextBody renders s as a text body of at least size bytes:
// "~sim.{run}.{sender}.{n}.{unixnano}~" padded with 'x'.
func (s Stamp) TextBody(size int) string {
	b := make([]byte, 0, max(size, 48))
	b = append(b, "~sim."...)
	b = append(b, s.Run...)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(s.Sender), 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, s.N, 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, s.SentAt.UnixNano(), 10)
	b = append(b, '~')
	for len(b) < size {
		b = append(b, 'x')
	}
	return string(b)
}

// ParseTextBody reads a stamp written by TextBody.
func ParseTextBody(body string) (Stamp, error) {
	rest, ok := strings.CutPrefix(body, "~sim.")
	if !ok {
		return Stamp{}, errStamp
	}
	end := strings.IndexByte(rest, '~')
	if end < 0 {
		return Stamp{}, errStamp
	}
	parts := strings.Split(rest[:end], ".")
	if len(parts) != 4 || strings.ContainsFunc(parts[0], func(r rune) bool {
		return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z')
	}) {
		return Stamp{}, errStamp
	}
	sender, err1 := strconv.Atoi(parts[1])
	n, err2 := strconv.ParseUint(parts[2], 10, 64)
	ns, err3 := strconv.ParseInt(parts[3], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || sender < 0 {
		return Stamp{}, errStamp
	}
	return Stamp{Run: parts[0], Sender: sender, N: n, SentAt: time.Unix(0, ns)}, nil
}

// rawStampLen is the binary stamp size: magic, sender, n, unix nanos.
const rawStampLen = 2 + 4 + 8 + 8

// RawPayload renders s as a binary MQTT payload of at least size bytes.
func (s Stamp) RawPayload(size int) []byte {
	b := make([]byte, max(size, rawStampLen))
	b[0], b[1] = 's', 'm'
	binary.BigEndian.PutUint32(b[2:], uint32(s.Sender))
	binary.BigEndian.PutUint64(b[6:], s.N)
	binary.BigEndian.PutUint64(b[14:], uint64(s.SentAt.UnixNano()))
	return b
}

// ParseRawPayload reads a stamp written by RawPayload.
func ParseRawPayload(p []byte) (Stamp, error) {
	if len(p) < rawStampLen || p[0] != 's' || p[1] != 'm' {
		return Stamp{}, errStamp
	}
	return Stamp{
		Sender: int(binary.BigEndian.Uint32(p[2:])),
		N:      binary.BigEndian.Uint64(p[6:]),
		SentAt: time.Unix(0, int64(binary.BigEndian.Uint64(p[14:]))),
	}, nil
}
