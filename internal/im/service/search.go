package service

import (
	"errors"

	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
)

// search answers the search RPC (§15): the caller's readable
// conversations (current ones and groups it left, each inside its
// membership window) are resolved here, from the domain, and handed to
// the index as filters; each hit is read back from the store, so an
// event that expired, was trimmed or deleted since it was indexed, or
// lies outside the window, never reaches the caller.
// Search runs the search RPC for uid outside MQTT (GET /v1/search): the
// same visibility rules, results encoded as JSON.
func (s *Service) Search(uid string, a codec.SearchArgs) (any, error) {
	return s.search(&Device{UID: uid}, &a)
}

func (s *Service) search(d *Device, a *codec.SearchArgs) (any, error) {
	if s.o.Search == nil {
		return nil, im.ErrNotImplemented
	}
	terms, err := im.ParseSearch(a.Q)
	if err != nil {
		return nil, err
	}
	n := a.Max
	switch {
	case n < 0 || n > im.MaxSearchMax:
		return nil, im.ErrBadMax
	case n == 0:
		n = im.DefaultSearchMax
	}
	var before ulid.ULID
	if a.Before != "" {
		if before, err = ulid.ParseStrict(a.Before); err != nil {
			return nil, im.ErrBadBefore
		}
	}
	var convs []im.ConvWindow
	if a.CV != "" {
		c, e := s.readable(d.UID, a.CV)
		if e != nil {
			return nil, e
		}
		convs = []im.ConvWindow{{CV: c.cv, Window: c.window}}
	} else if convs, err = s.searchable(d.UID); err != nil {
		return nil, err
	}
	hits, more, err := s.o.Search.Search(im.SearchQuery{Terms: terms, Convs: convs, Before: before, Max: n})
	if err != nil {
		return nil, err
	}
	windows := make(map[string]im.Window, len(convs))
	for _, c := range convs {
		windows[c.CV] = c.Window
	}
	r := codec.SearchResult{Items: []codec.SearchItem{}}
	budget, total := s.budget(d, 0), 0
	var next ulid.ULID // the last hit looked at
	for _, h := range hits {
		ev, err := s.o.Store.EventByID(h.ID)
		if errors.Is(err, im.ErrNotFound) {
			next = h.ID
			continue // expired or trimmed since it was indexed
		}
		if err != nil {
			return nil, err
		}
		if w, ok := windows[ev.CV]; !ok || !w.Contains(ev.Seq) || !im.Searchable(&ev) {
			next = h.ID
			continue
		}
		item := codec.SearchItem{Event: ev, HL: h.HL}
		b, err := codec.Encode(&item, d.Prefs.CBOR)
		if err != nil {
			return nil, im.ErrInternal
		}
		if total+len(b)+1 > budget {
			if len(r.Items) > 0 {
				more = true // the page is full: go on after the last one looked at
				break
			}
			// Too big alone: send it cut, msg.get has the rest.
			item.Trunc = true
			item.B = codec.CutUTF8(item.B, max(len(item.B)-(len(b)-budget)-32, 0))
		}
		total += len(b) + 1
		r.Items = append(r.Items, item)
		next = h.ID
	}
	if more {
		r.Next = next.String()
	}
	return r, nil
}

// searchable lists the conversations uid may read, each with its window:
// those on its list and the groups it left (which the index remembers
// from their member events). One that is no longer readable (a group
// whose membership record went with a deleted account) is skipped.
func (s *Service) searchable(uid string) ([]im.ConvWindow, error) {
	cvs, err := s.o.Store.UserConvs(uid)
	if err != nil {
		return nil, err
	}
	joined, err := s.o.Search.Joined(uid)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(cvs)+len(joined))
	out := make([]im.ConvWindow, 0, len(cvs)+len(joined))
	for _, cv := range append(cvs, joined...) {
		if seen[cv] {
			continue
		}
		seen[cv] = true
		c, err := s.readable(uid, cv)
		var e *im.Error
		if errors.As(err, &e) {
			continue // not readable by uid (any more)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, im.ConvWindow{CV: c.cv, Window: c.window})
	}
	return out, nil
}
