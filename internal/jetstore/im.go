package jetstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
)

var _ im.Store = (*Store)(nil)

func sortStrings(s []string) { slices.Sort(s) }

// loadEvent reads the event stored under subject as users see it (a
// deleted one as its tombstone); found is false when it expired, was
// trimmed or cannot be decoded (counted in Unreadable).
func (s *Store) loadEvent(subject string) (ev im.Event, found bool, err error) {
	ev, found, err = s.loadRaw(subject)
	ev.Tombstone()
	return ev, found, err
}

// loadRaw is loadEvent without the tombstone.
func (s *Store) loadRaw(subject string) (ev im.Event, found bool, err error) {
	r, err := s.getNamed(subject)
	if errors.Is(err, ErrNotFound) {
		return ev, false, nil
	}
	if err != nil {
		return ev, false, err
	}
	ev, found = s.decodeEvent(subject, r.data)
	return ev, found, nil
}

// decodeEvent decodes the stored event v of subject; found is false when
// it cannot be decoded (counted in Unreadable).
func (s *Store) decodeEvent(subject string, v []byte) (ev im.Event, found bool) {
	if err := codec.UnmarshalStored(v, &ev); err != nil {
		s.bad.Add(1)
		s.lg.Error("jetstore: unreadable event", "subject", subject, "err", err)
		return im.Event{}, false
	}
	return ev, true
}

// getNamed is get of a record that another record named (an event its
// pointer or index entry names, a pointer below the stream's head). While
// the leader is away a replica answers get, and replicas apply writes at
// their own pace: the naming record may have come from one further on,
// or from the leader. Only the leader may say such a record is gone (it
// expired or was trimmed); getNamed asks it, waiting through the
// election, rather than leave a gap in a read.
func (s *Store) getNamed(subject string) (rec, error) {
	replica := s.logRoute.away(s.opts.LeaderWait) // before get, or a probe may end it meanwhile
	r, err := s.get(subject)
	if errors.Is(err, ErrNotFound) && (replica || s.logRoute.away(s.opts.LeaderWait)) {
		return s.getLeader(subject)
	}
	return r, err
}

// USHead is the last us of uid's stream, read from the stream leader.
func (s *Store) USHead(uid string) (uint64, error) {
	n, _, err := s.getU64(userHeadSubj(uid))
	return n, err
}

// ConvSeq is the last seq of cv.
func (s *Store) ConvSeq(cv string) (uint64, error) {
	n, _, err := s.getU64(convHeadSubj(cv))
	return n, err
}

// StreamFloor is the first us of uid's stream that retention kept.
func (s *Store) StreamFloor(uid string) (uint64, error) {
	n, _, err := s.getU64(floorSubj(uid))
	return n, err
}

// Stream reads up to max events of uid's stream after since.
func (s *Store) Stream(uid string, since uint64, max int) (evs []im.Event, more bool, err error) {
	floor, err := s.StreamFloor(uid)
	if err != nil {
		return nil, false, err
	}
	if since+1 < floor {
		return nil, false, im.ErrTrimmed
	}
	top, err := s.USHead(uid)
	if err != nil {
		return nil, false, err
	}
	us := since + 1
	for ; us <= top && len(evs) < max; us++ {
		r, err := s.getNamed(pointerSubj(uid, us))
		if errors.Is(err, ErrNotFound) {
			continue // expired
		}
		if err != nil {
			return nil, false, err
		}
		ev, found, err := s.loadEvent(string(r.data))
		if err != nil {
			return nil, false, err
		}
		if !found {
			continue
		}
		ev.US = us
		evs = append(evs, ev)
	}
	return evs, us <= top, nil
}

// History reads a page of a conversation inside its window.
func (s *Store) History(q im.HistoryQuery) (items []im.Event, complete bool, err error) {
	top, err := s.ConvSeq(q.CV)
	if err != nil {
		return nil, false, err
	}
	lo, hi := max(q.Window.From, 1), top
	if q.Window.To != 0 {
		hi = min(hi, q.Window.To)
	}
	read := func(seq uint64) error {
		ev, found, err := s.loadEvent(eventSubj(q.CV, seq))
		if err == nil && found {
			items = append(items, ev)
		}
		return err
	}
	if q.After > 0 {
		seq := max(q.After+1, lo)
		for ; seq <= hi && len(items) < q.Max; seq++ {
			if err := read(seq); err != nil {
				return nil, false, err
			}
		}
		return items, seq > hi, nil
	}
	start := hi
	if q.Before > 0 {
		start = min(q.Before-1, hi)
	}
	seq := start
	for ; seq >= lo && seq > 0 && len(items) < q.Max; seq-- {
		if err := read(seq); err != nil {
			return nil, false, err
		}
	}
	slices.Reverse(items)
	return items, seq < lo || seq == 0, nil
}

// EventByID returns the conversation event with id.
func (s *Store) EventByID(id ulid.ULID) (im.Event, error) {
	r, err := s.get(idSubj(id))
	if err != nil {
		return im.Event{}, err
	}
	ev, found, err := s.loadEvent(string(r.data))
	if err != nil {
		return ev, err
	}
	if !found {
		return ev, ErrNotFound
	}
	return ev, nil
}

// Deduped returns the event of an earlier command (uid, did, cmid).
func (s *Store) Deduped(uid, did, cmid string) (im.Event, error) {
	ev, _, err := s.deduped(uid, did, cmid)
	return ev, err
}

// deduped also returns the dedupe record's stream sequence (what a new
// command's compare-and-set expects).
func (s *Store) deduped(uid, did, cmid string) (im.Event, uint64, error) {
	r, err := s.get(dedupeSubj(uid, did, cmid))
	if err != nil {
		return im.Event{}, r.seq, err
	}
	us, p, err := parseDedupe(r.data)
	if err != nil {
		return im.Event{}, 0, err
	}
	ev, found, err := s.loadEvent(p)
	if err != nil {
		return ev, 0, err
	}
	if !found {
		return ev, r.seq, im.ErrGone
	}
	ev.US = us
	return ev, r.seq, nil
}

// parseDedupe reads a dedupe record: "us subject", the sender's us (0
// when not a recipient) and the event's subject.
func parseDedupe(v []byte) (us uint64, subject string, err error) {
	usText, subject, ok := strings.Cut(string(v), " ")
	us, perr := strconv.ParseUint(usText, 10, 64)
	if !ok || perr != nil || !strings.HasPrefix(subject, "tern.") {
		return 0, "", fmt.Errorf("jetstore: bad dedupe record %q", v)
	}
	return us, subject, nil
}

// UserConvs lists the conversations on uid's list.
func (s *Store) UserConvs(uid string) ([]string, error) {
	return s.names(subj("uc", tok(uid), "*"))
}

// DMFloor is the last seq of cv that a deleted earlier account of uid
// could read.
func (s *Store) DMFloor(cv, uid string) (uint64, error) {
	n, _, err := s.getU64(dmFloorSubj(cv, uid))
	return n, err
}

// Group returns a group's record.
func (s *Store) Group(gid string) (im.Group, error) {
	var g im.Group
	return g, s.getJSON(groupSubj(gid), &g)
}

func (s *Store) getJSON(subject string, v any) error {
	r, err := s.get(subject)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(r.data, v); err != nil {
		return fmt.Errorf("jetstore: %s: %w", subject, err)
	}
	return nil
}

// AllGroups calls fn for every group, in gid order.
func (s *Store) AllGroups(fn func(im.Group) error) error {
	var gs []im.Group
	err := s.scan(subj("gr", "*"), func(r rec) error {
		var g im.Group
		if err := json.Unmarshal(r.data, &g); err != nil {
			return fmt.Errorf("jetstore: %s: %w", r.subj, err)
		}
		gs = append(gs, g)
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(gs, func(a, b im.Group) int { return strings.Compare(a.GID, b.GID) })
	for _, g := range gs {
		if err := fn(g); err != nil {
			return err
		}
	}
	return nil
}

// Member is uid's record of gid.
func (s *Store) Member(gid, uid string) (im.Member, error) {
	var m im.Member
	return m, s.getJSON(memberSubj(gid, uid), &m)
}

// Members returns the current members of gid, in uid order.
func (s *Store) Members(gid string) (map[string]im.Member, []string, error) {
	recs := map[string]im.Member{}
	var order []string
	err := s.scan(subj("mb", tok(gid), "*"), func(r rec) error {
		var m im.Member
		if err := json.Unmarshal(r.data, &m); err != nil {
			return fmt.Errorf("jetstore: %s: %w", r.subj, err)
		}
		if !m.Current() {
			return nil
		}
		uid, err := lastToken(r.subj)
		if err != nil {
			return err
		}
		recs[uid] = m
		order = append(order, uid)
		return nil
	})
	slices.Sort(order)
	return recs, order, err
}

// Groups lists the groups uid is a current member of.
func (s *Store) Groups(uid string) ([]string, error) {
	cvs, err := s.UserConvs(uid)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, cv := range cvs {
		if gid, ok := strings.CutPrefix(cv, "g:"); ok {
			out = append(out, gid)
		}
	}
	return out, nil
}

// Marker is uid's marker of kind k in cv.
func (s *Store) Marker(cv, uid, k string) (uint64, error) {
	n, _, err := s.getU64(markerSubj(cv, uid, k))
	return n, err
}

// Reacted reports whether uid has reaction k on message id.
func (s *Store) Reacted(id ulid.ULID, uid, k string) (bool, error) {
	_, err := s.get(reactSubj(id, uid, k))
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}
