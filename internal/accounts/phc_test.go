package accounts

import "testing"

func FuzzParsePHC(f *testing.F) {
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g")
	f.Add("$argon2id$v=19$m=1,t=1,p=1$$")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parsePHC(s)
		if err != nil {
			return
		}
		if h.memory > 4<<20 || h.time > 64 || h.threads == 0 || len(h.sum) < 16 {
			t.Fatalf("accepted unsafe parameters from %q: %+v", s, h)
		}
	})
}
