package presence

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// Statuses of PROTOCOL §8.
const (
	On   = "on"
	Off  = "off"
	Away = "away"
	Busy = "busy"
)

// MaxText is the longest status text accepted, in bytes: the retained
// payload stays well under the 1 KiB of §13.
const MaxText = 256

// Errors of parseOp.
var (
	ErrPayload = errors.New("presence: payload is neither a JSON nor a CBOR map")
	ErrStatus  = errors.New("presence: s is not on, off, away or busy")
	ErrText    = errors.New("presence: tx is too long or not UTF-8 text")
	ErrEmptyOp = errors.New("presence: neither s nor tx is set")
)

// op is one presence command from a device: {"s":…,"tx":…} on
// im/up/{uid}/{did}/pres (or the device's fired will).
type op struct {
	S     string // "" when absent
	TX    string
	HasTX bool // tx was present; "" clears the text
}

// parseOp decodes a presence command, JSON or CBOR (told apart by the
// first byte, PROTOCOL §13). Keys other than s and tx are ignored.
func parseOp(b []byte) (op, error) {
	var o op
	t := bytes.TrimLeft(b, " \t\r\n")
	switch {
	case len(t) > 0 && t[0] == '{':
		var v struct {
			S  *string `json:"s"`
			TX *string `json:"tx"`
		}
		if err := json.Unmarshal(t, &v); err != nil {
			return o, ErrPayload
		}
		if v.S != nil {
			o.S = *v.S
			if o.S == "" {
				return o, ErrStatus
			}
		}
		if v.TX != nil {
			o.TX, o.HasTX = *v.TX, true
		}
	case len(b) > 0 && b[0]>>5 == 5: // CBOR major type 5: a map
		var err error
		if o, err = parseCBOR(b); err != nil {
			return o, err
		}
	default:
		return o, ErrPayload
	}
	switch o.S {
	case "", On, Off, Away, Busy:
	default:
		return o, ErrStatus
	}
	if len(o.TX) > MaxText || !utf8.ValidString(o.TX) {
		return o, ErrText
	}
	if o.S == "" && !o.HasTX {
		return o, ErrEmptyOp
	}
	return o, nil
}

// parseCBOR reads a definite-length CBOR map whose s and tx values are
// text strings; values of other keys may be any scalar or string. It is
// just enough CBOR for this one command.
func parseCBOR(b []byte) (op, error) {
	var o op
	d := cborReader{b: b}
	major, n, err := d.head()
	if err != nil || major != 5 {
		return o, ErrPayload
	}
	sSet := false
	for range n {
		major, kl, err := d.head()
		if err != nil || major != 3 {
			return o, ErrPayload
		}
		k, err := d.bytes(kl)
		if err != nil {
			return o, ErrPayload
		}
		major, vl, err := d.head()
		if err != nil {
			return o, ErrPayload
		}
		switch major {
		case 0, 1, 7: // integers, simple values and floats: the head is all
			continue
		case 2, 3:
		default: // tags, arrays and maps are not part of this command
			return o, ErrPayload
		}
		v, err := d.bytes(vl)
		if err != nil {
			return o, ErrPayload
		}
		switch string(k) {
		case "s":
			if major != 3 || sSet || len(v) == 0 {
				return o, ErrStatus
			}
			o.S, sSet = string(v), true
		case "tx":
			if major != 3 || o.HasTX {
				return o, ErrText
			}
			o.TX, o.HasTX = string(v), true
		}
	}
	if d.off != len(b) {
		return o, ErrPayload
	}
	return o, nil
}

type cborReader struct {
	b   []byte
	off int
}

var errShort = errors.New("presence: short cbor")

// head reads an item head: major type and argument. Indefinite lengths
// and reserved additional information are refused.
func (d *cborReader) head() (major byte, arg uint64, err error) {
	if d.off >= len(d.b) {
		return 0, 0, errShort
	}
	c := d.b[d.off]
	d.off++
	major, info := c>>5, c&0x1f
	var size int
	switch {
	case info < 24:
		return major, uint64(info), nil
	case info == 24:
		size = 1
	case info == 25:
		size = 2
	case info == 26:
		size = 4
	case info == 27:
		size = 8
	default:
		return 0, 0, errShort
	}
	if len(d.b)-d.off < size {
		return 0, 0, errShort
	}
	var buf [8]byte
	copy(buf[8-size:], d.b[d.off:d.off+size])
	d.off += size
	return major, binary.BigEndian.Uint64(buf[:]), nil
}

func (d *cborReader) bytes(n uint64) ([]byte, error) {
	if n > uint64(len(d.b)-d.off) {
		return nil, errShort
	}
	v := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return v, nil
}
