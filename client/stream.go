package client

import (
	"context"
	"fmt"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/topics"
)

// syncAll runs sync from the cursor until more is false.
func (c *Client) syncAll(ctx context.Context, cn *conn) error {
	for {
		since := c.Cursor()
		var r codec.SyncResult
		args := codec.SyncArgs{Since: since, Max: c.opts.SyncMax, MaxBytes: c.opts.SyncMaxBytes}
		if err := c.call(ctx, cn, "sync", args, &r, c.opts.CBOR); err != nil {
			return err
		}
		if r.Reset {
			c.jump(&Reset{US: r.USHead, Convs: r.Convs})
			if r.USHead <= since {
				return nil // nothing after the head: done
			}
			continue
		}
		for i := range r.Ev {
			ev := &r.Ev[i]
			if last := c.Cursor(); ev.US > last+1 {
				// The stream itself has a hole: report it and move on.
				c.stats.holes.Add(1)
				c.jump(&Reset{US: ev.US - 1, Hole: true})
			}
			c.apply(ev)
		}
		if !r.More || c.Cursor() <= since {
			return nil
		}
	}
}

// jump moves the cursor without events and reports it.
func (c *Client) jump(r *Reset) {
	c.mu.Lock()
	c.lastUS = r.US
	c.mu.Unlock()
	c.emit(r)
}

func (c *Client) emit(e Event) {
	if c.opts.OnEvent != nil {
		c.opts.OnEvent(e)
	}
}

// drain handles queued live payloads; a stream gap triggers a sync.
func (c *Client) drain(ctx context.Context, cn *conn) error {
	for {
		c.mu.Lock()
		ps, kinds, tps := c.queued, c.kinds, c.topicsQ
		c.queued, c.kinds, c.topicsQ = nil, nil, nil
		c.mu.Unlock()
		if len(ps) == 0 {
			return nil
		}
		gap := false
		for i, p := range ps {
			switch kinds[i] {
			case 'e':
				if e, err := decodeEph(p); err == nil {
					c.emit(e)
				}
			case 'p':
				var pr codec.Presence
				if err := codec.Decode(p, &pr); err == nil {
					c.emit(presence(tps[i][len(topics.Presence("")):], pr))
				}
			case 'r':
				if rep, err := decodeReply(p); err == nil {
					c.onErr(&Error{CMID: rep.CMID, Code: rep.Code, Msg: rep.Msg})
				}
			case 'i':
				var ev codec.Event
				if err := codec.Decode(p, &ev); err != nil {
					continue
				}
				if ev.US > c.Cursor()+1 {
					gap = true
					continue // sync brings it, in order
				}
				c.apply(&ev)
			}
		}
		if gap {
			c.stats.gaps.Add(1)
			if err := c.syncAll(ctx, cn); err != nil {
				return fmt.Errorf("sync after a gap: %w", err)
			}
		}
	}
}

// apply hands one stream event to the handler if it is the next one.
func (c *Client) apply(ev *codec.Event) {
	if ev.US == 0 {
		return
	}
	c.mu.Lock()
	if ev.US <= c.lastUS {
		c.mu.Unlock()
		c.stats.redelivered.Add(1)
		return
	}
	c.lastUS = ev.US
	c.mu.Unlock()
	if ev.From == c.opts.UID && ev.FD == c.opts.DID && ev.CMID != "" {
		c.confirm(ev.CMID)
	}
	c.emit(fromCodec(ev))
}
