package files

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// byteRate bounds the upload bytes per device (a token bucket of bytes per
// second); devices whose bucket is full again are forgotten.
type byteRate struct {
	limit rate.Limit
	burst int

	mu sync.Mutex
	m  map[string]*rate.Limiter
}

// maxDevices bounds the map between sweeps.
const maxDevices = 100_000

func newByteRate(perSec, burst int64) *byteRate {
	if perSec <= 0 {
		return nil
	}
	return &byteRate{limit: rate.Limit(perSec), burst: int(burst), m: map[string]*rate.Limiter{}}
}

// allow takes n bytes from the device's bucket, or reports that it may
// not send them now. A nil byteRate allows everything.
func (r *byteRate) allow(device string, n int, now time.Time) bool {
	if r == nil {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.m[device]
	if l == nil {
		if len(r.m) >= maxDevices {
			for k, x := range r.m {
				if x.TokensAt(now) >= float64(r.burst) {
					delete(r.m, k)
				}
			}
		}
		l = rate.NewLimiter(r.limit, r.burst)
		r.m[device] = l
	}
	return l.AllowN(now, n)
}
