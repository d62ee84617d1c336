package jetstore

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tern-im/tern/internal/accounts"
	"github.com/tern-im/tern/internal/im"
)

var _ accounts.Store = (*Store)(nil)

// kvEntry is a bucket's value of a key and its revision.
type kvEntry struct {
	value []byte
	rev   uint64
}

func (e kvEntry) Value() []byte    { return e.value }
func (e kvEntry) Revision() uint64 { return e.rev }

// kvLeaderGet reads a key from the bucket's stream leader;
// jetstream.ErrKeyNotFound when absent or deleted.
func (s *Store) kvLeaderGet(ctx context.Context, bucket, key string) (kvEntry, error) {
	m, err := s.leaderGet(ctx, "KV_"+bucket, msgGetReq{LastFor: "$KV." + bucket + "." + key})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return kvEntry{}, jetstream.ErrKeyNotFound
	}
	if err != nil {
		return kvEntry{}, err
	}
	switch m.Header.Get("KV-Operation") {
	case "DEL", "PURGE":
		return kvEntry{}, jetstream.ErrKeyNotFound
	}
	return kvEntry{value: m.Data, rev: m.Sequence}, nil
}

// kvGet reads a key, from the bucket's leader or, while it is away, a
// replica (route); ErrNotFound when absent or deleted.
func (s *Store) kvGet(bucket, key string) (kvEntry, error) {
	var e kvEntry
	err := s.read(s.kvRoute[bucket], func(ctx context.Context) (err error) {
		e, err = s.kvLeaderGet(ctx, bucket, key)
		return err
	}, func(ctx context.Context) error {
		d, err := s.kv[bucket].Get(ctx, key)
		if err == nil {
			e = kvEntry{value: d.Value(), rev: d.Revision()}
		}
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return kvEntry{}, ErrNotFound
	}
	if err != nil {
		return kvEntry{}, fmt.Errorf("jetstore: %s %s: %w", bucket, key, err)
	}
	return e, nil
}

func (s *Store) kvPut(bucket, key string, v []byte) error {
	err := s.do(func(ctx context.Context) error {
		_, err := s.kv[bucket].Put(ctx, key, v)
		return err
	})
	if err == nil {
		s.kvRoute[bucket].up() // the leader answered: reads go to it again
	}
	if err != nil {
		return fmt.Errorf("jetstore: %s %s: %w", bucket, key, err)
	}
	return nil
}

func (s *Store) kvDelete(bucket, key string) error {
	err := s.do(func(ctx context.Context) error { return s.kv[bucket].Delete(ctx, key) })
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("jetstore: %s %s: %w", bucket, key, err)
	}
	return nil
}

// kvKeys lists the keys of bucket matching filter (a NATS subject
// filter over keys), sorted.
func (s *Store) kvKeys(bucket, filter string) ([]string, error) {
	var out []string
	err := s.do(func(ctx context.Context) error {
		out = out[:0]
		l, err := s.kv[bucket].ListKeysFiltered(ctx, filter)
		if err != nil {
			return err
		}
		// The channel closes once every key is listed (or ctx ends first).
		for k := range l.Keys() {
			out = append(out, k)
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("jetstore: keys of %s: %w", bucket, err)
	}
	slices.Sort(out)
	return out, nil
}

// kvNames lists the decoded last tokens of the keys under prefix.
func (s *Store) kvNames(bucket, prefix string) ([]string, error) {
	ks, err := s.kvKeys(bucket, prefix+".*")
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ks))
	for _, k := range ks {
		n, err := lastToken(k)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

func (s *Store) kvHas(bucket, key string) (bool, error) {
	_, err := s.kvGet(bucket, key)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Contacts: tern-contacts holds c.{uid}.{other} (roster), b.{uid}.{other}
// (uid blocks other) and r.{other}.{uid} (the reverse of b).

// Contacts lists uid's roster.
func (s *Store) Contacts(uid string) ([]string, error) {
	return s.kvNames(bucketContacts, "c."+tok(uid))
}

// Blocked lists whom uid blocks.
func (s *Store) Blocked(uid string) ([]string, error) {
	return s.kvNames(bucketContacts, "b."+tok(uid))
}

// BlockedBy lists who blocks uid.
func (s *Store) BlockedBy(uid string) ([]string, error) {
	return s.kvNames(bucketContacts, "r."+tok(uid))
}

// IsContact reports whether other is on uid's roster.
func (s *Store) IsContact(uid, other string) (bool, error) {
	return s.kvHas(bucketContacts, "c."+tok(uid)+"."+tok(other))
}

// Blocks reports whether a blocks b.
func (s *Store) Blocks(a, b string) (bool, error) {
	return s.kvHas(bucketContacts, "b."+tok(a)+"."+tok(b))
}

// SetContact adds (on) or removes other on uid's roster.
func (s *Store) SetContact(uid, other string, on bool) error {
	return s.kvFlag(on, "c."+tok(uid)+"."+tok(other))
}

// SetBlock makes uid block (on) or unblock other.
func (s *Store) SetBlock(uid, other string, on bool) error {
	return s.kvFlag(on, "b."+tok(uid)+"."+tok(other), "r."+tok(other)+"."+tok(uid))
}

func (s *Store) kvFlag(on bool, keys ...string) error {
	for _, k := range keys {
		var err error
		if on {
			err = s.kvPut(bucketContacts, k, []byte("1"))
		} else {
			err = s.kvDelete(bucketContacts, k)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// DMPeer answers whether other exists and whether either blocks the other.
func (s *Store) DMPeer(uid, other string) (exists, blocked bool, err error) {
	if exists, err = s.UserExists(other); err != nil {
		return false, false, err
	}
	for _, p := range [][2]string{{uid, other}, {other, uid}} {
		b, err := s.Blocks(p[0], p[1])
		if err != nil {
			return false, false, err
		}
		blocked = blocked || b
	}
	return exists, blocked, nil
}

// UserExists reports whether uid is an account.
func (s *Store) UserExists(uid string) (bool, error) { return s.kvHas(bucketUsers, tok(uid)) }

// Presence is uid's stored presence.
func (s *Store) Presence(uid string) (im.Presence, error) {
	var p im.Presence
	e, err := s.kvGet(bucketPresence, tok(uid))
	if err != nil {
		return p, err
	}
	return p, json.Unmarshal(e.Value(), &p)
}

// Presences returns those of uids that have one.
func (s *Store) Presences(uids []string) (map[string]im.Presence, error) {
	out := map[string]im.Presence{}
	for _, u := range uids {
		p, err := s.Presence(u)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[u] = p
	}
	return out, nil
}

// PutPresence stores uid's presence if its pv is greater than the stored
// one (compare-and-set: nodes race), else it returns im.ErrStale.
func (s *Store) PutPresence(uid string, p im.Presence) error {
	v, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return s.kvSwapNow(bucketPresence, tok(uid), func(old []byte) ([]byte, bool, error) {
		if old != nil {
			var cur im.Presence
			if err := json.Unmarshal(old, &cur); err == nil && cur.PV >= p.PV {
				return nil, false, fmt.Errorf("jetstore: presence of %s: pv %d over %d: %w", uid, p.PV, cur.PV, im.ErrStale)
			}
		}
		return v, true, nil
	})
}

// PutPresences stores several.
func (s *Store) PutPresences(ps map[string]im.Presence) error {
	for u, p := range ps {
		if err := s.PutPresence(u, p); err != nil {
			return err
		}
	}
	return nil
}

// RangePresence calls fn for every stored presence until fn fails.
func (s *Store) RangePresence(fn func(uid string, p im.Presence) error) error {
	ks, err := s.kvKeys(bucketPresence, ">")
	if err != nil {
		return err
	}
	for _, k := range ks {
		uid, err := untok(k)
		if err != nil {
			return err
		}
		p, err := s.Presence(uid)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if err := fn(uid, p); err != nil {
			return err
		}
	}
	return nil
}

// Incr adds one to the cluster-wide counter name and returns it.
func (s *Store) Incr(name string) (uint64, error) {
	kv := s.kv[bucketMeta]
	var last error
	for attempt := range maxAttempts {
		if attempt > 0 {
			s.backoff(attempt)
		}
		var n uint64
		err := s.do(func(ctx context.Context) error {
			e, err := s.kvLeaderGet(ctx, bucketMeta, tok(name))
			var rev uint64
			n = 0
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
			case err != nil:
				return err
			default:
				rev = e.Revision()
				if n, err = strconv.ParseUint(string(e.Value()), 10, 64); err != nil {
					return err
				}
			}
			n++
			v := []byte(strconv.FormatUint(n, 10))
			if rev == 0 {
				_, err = kv.Create(ctx, tok(name), v)
			} else {
				_, err = kv.Update(ctx, tok(name), v, rev)
			}
			return err
		})
		if err == nil {
			return n, nil
		}
		if !isWrongSeq(err) {
			return 0, fmt.Errorf("jetstore: counter %s: %w", name, err)
		}
		last = err
	}
	return 0, fmt.Errorf("%w: counter %s: %v", ErrContention, name, last)
}

func isWrongSeq(err error) bool {
	var apiErr *jetstream.APIError
	// 10164: another write of the key is in flight (a constant variant).
	return errors.Is(err, jetstream.ErrKeyExists) ||
		(errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == 10164))
}

// Accounts: tern-users holds {uid} → User (JSON); tern-tokens holds
// h.{sha256 hex} → Token and u.{uid}.{sha256 hex} → "" (uid's tokens).

// PutUser creates a user; im.ErrExists when the uid is taken.
func (s *Store) PutUser(u accounts.User) error {
	v, err := json.Marshal(u)
	if err != nil {
		return err
	}
	err = s.do(func(ctx context.Context) error {
		_, err := s.kv[bucketUsers].Create(ctx, tok(u.UID), v)
		return err
	})
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return im.ErrExists
		}
		return fmt.Errorf("jetstore: put user: %w", err)
	}
	return nil
}

// UpdateUser applies fn to an existing user record atomically.
func (s *Store) UpdateUser(uid string, fn func(*accounts.User) error) error {
	for attempt := range maxAttempts {
		if attempt > 0 {
			s.backoff(attempt)
		}
		e, err := s.kvGet(bucketUsers, tok(uid))
		if err != nil {
			return err
		}
		var u accounts.User
		if err := json.Unmarshal(e.Value(), &u); err != nil {
			return err
		}
		if err := fn(&u); err != nil {
			return err
		}
		v, err := json.Marshal(u)
		if err != nil {
			return err
		}
		err = s.do(func(ctx context.Context) error {
			_, err := s.kv[bucketUsers].Update(ctx, tok(uid), v, e.Revision())
			return err
		})
		if err == nil {
			return nil
		}
		if !isWrongSeq(err) {
			return fmt.Errorf("jetstore: update user: %w", err)
		}
	}
	return ErrContention
}

// User returns a user record.
func (s *Store) User(uid string) (accounts.User, error) {
	var u accounts.User
	e, err := s.kvGet(bucketUsers, tok(uid))
	if err != nil {
		return u, err
	}
	return u, json.Unmarshal(e.Value(), &u)
}

// Users lists every user in uid order.
func (s *Store) Users() ([]accounts.User, error) {
	ks, err := s.kvKeys(bucketUsers, ">")
	if err != nil {
		return nil, err
	}
	var out []accounts.User
	for _, k := range ks {
		uid, err := untok(k)
		if err != nil {
			return nil, err
		}
		u, err := s.User(uid)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b accounts.User) int { return strings.Compare(a.UID, b.UID) })
	return out, nil
}

// PutToken stores a token under the SHA-256 of its secret.
func (s *Store) PutToken(hash []byte, t accounts.Token) error {
	v, err := json.Marshal(t)
	if err != nil {
		return err
	}
	h := hex.EncodeToString(hash)
	if err := s.kvPut(bucketTokens, "h."+h, v); err != nil {
		return err
	}
	return s.kvPut(bucketTokens, "u."+tok(t.UID)+"."+h, nil)
}

// TokenByHash finds a token.
func (s *Store) TokenByHash(hash []byte) (accounts.Token, error) {
	var t accounts.Token
	e, err := s.kvGet(bucketTokens, "h."+hex.EncodeToString(hash))
	if err != nil {
		return t, err
	}
	return t, json.Unmarshal(e.Value(), &t)
}

// Tokens lists uid's tokens.
func (s *Store) Tokens(uid string) ([]accounts.Token, error) {
	hs, err := s.kvNames(bucketTokens, "u."+tok(uid))
	if err != nil {
		return nil, err
	}
	var out []accounts.Token
	for _, h := range hs {
		b, err := hex.DecodeString(h)
		if err != nil {
			return nil, fmt.Errorf("jetstore: token key %q: %w", h, err)
		}
		t, err := s.TokenByHash(b)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// RevokeTokens deletes uid's tokens: of device did (all when empty), only
// the one with id when id is set.
func (s *Store) RevokeTokens(uid, did, id string) (int, error) {
	hs, err := s.kvNames(bucketTokens, "u."+tok(uid))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, h := range hs {
		b, err := hex.DecodeString(h)
		if err != nil {
			return n, fmt.Errorf("jetstore: token key %q: %w", h, err)
		}
		t, err := s.TokenByHash(b)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return n, err
		}
		if err == nil && ((did != "" && t.DID != did) || (id != "" && t.ID != id)) {
			continue
		}
		if err := s.kvDelete(bucketTokens, "h."+h); err != nil {
			return n, err
		}
		if err := s.kvDelete(bucketTokens, "u."+tok(uid)+"."+h); err != nil {
			return n, err
		}
		if err == nil {
			n++
		}
	}
	return n, nil
}

// DeleteUser deletes an account as the Badger store does (docs/storage.md,
// "Deleting a user"): the record and tokens; a leave event in each group
// (an owner's group passes on) and DM, with a floor in the DM; the stream
// (its floor raised past the head); markers, the conversation list,
// contacts and blocks both ways. Stream entries stay stored behind the
// floor until retention trims them.
func (s *Store) DeleteUser(uid string) (accounts.Purged, error) {
	var p accounts.Purged
	if _, err := s.User(uid); err != nil {
		return p, err
	}
	if _, err := s.RevokeTokens(uid, "", ""); err != nil {
		return p, err
	}
	if err := s.kvDelete(bucketUsers, tok(uid)); err != nil {
		return p, err
	}
	cvs, err := s.UserConvs(uid)
	if err != nil {
		return p, err
	}
	for _, cv := range cvs {
		if gid, ok := strings.CutPrefix(cv, "g:"); ok {
			others, left, err := s.leaveGroup(gid, uid)
			if err != nil {
				return p, fmt.Errorf("jetstore: delete %s: leave group %s: %w", uid, gid, err)
			}
			if left {
				p.Groups = append(p.Groups, gid)
				p.Users = append(p.Users, others...)
			}
			continue
		}
		if err := s.leaveDM(cv, uid); err != nil {
			return p, fmt.Errorf("jetstore: delete %s: leave %s: %w", uid, cv, err)
		}
	}
	for _, pre := range []string{"c", "b", "r"} {
		others, err := s.kvNames(bucketContacts, pre+"."+tok(uid))
		if err != nil {
			return p, err
		}
		for _, o := range others {
			keys := map[string][]string{
				"c": {"c." + tok(uid) + "." + tok(o)},
				"b": {"b." + tok(uid) + "." + tok(o), "r." + tok(o) + "." + tok(uid)},
				"r": {"r." + tok(uid) + "." + tok(o), "b." + tok(o) + "." + tok(uid)},
			}[pre]
			for _, k := range keys {
				if err := s.kvDelete(bucketContacts, k); err != nil {
					return p, err
				}
			}
			p.Users = append(p.Users, o)
		}
	}
	// Others' rosters that name uid: no reverse index; scan.
	ks, err := s.kvKeys(bucketContacts, "c.*."+tok(uid))
	if err != nil {
		return p, err
	}
	for _, k := range ks {
		if err := s.kvDelete(bucketContacts, k); err != nil {
			return p, err
		}
		if o, err := untok(strings.Split(k, ".")[1]); err == nil {
			p.Users = append(p.Users, o)
		}
	}
	head, err := s.USHead(uid)
	if err != nil {
		return p, err
	}
	return p, s.putRecord(floorSubj(uid), []byte(strconv.FormatUint(head+1, 10)))
}

// putRecord writes one record of the log stream outside an append.
func (s *Store) putRecord(subject string, v []byte) error {
	err := s.do(func(ctx context.Context) error {
		_, err := s.js.Publish(ctx, subject, v)
		return err
	})
	if err != nil {
		return fmt.Errorf("jetstore: put %s: %w", subject, err)
	}
	return nil
}

func (s *Store) leaveGroup(gid, uid string) (others []string, left bool, err error) {
	g, err := s.Group(gid)
	if errors.Is(err, ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	recs, order, err := s.Members(gid)
	if err != nil {
		return nil, false, err
	}
	as, others, ok := im.LeaveAppends(g, recs, order, uid)
	if !ok {
		return nil, false, nil
	}
	for _, a := range as {
		if err := s.Append(a); err != nil {
			return nil, false, err
		}
	}
	// The membership record goes: the uid was never a member.
	return others, true, s.putTombstone(memberSubj(gid, uid))
}

func (s *Store) leaveDM(cv, uid string) error {
	a, b, ok := strings.Cut(strings.TrimPrefix(cv, "d:"), ":")
	if !ok {
		return nil
	}
	other := a
	if other == uid {
		other = b
	}
	ap := &im.Append{
		CV: cv, To: []string{other},
		Event:     im.Event{T: im.TMember, Op: "leave", Who: []string{uid}, By: uid},
		UserConvs: []im.UserConv{{UID: uid, CV: cv, Remove: true}},
	}
	if err := s.Append(ap); err != nil {
		return err
	}
	for _, k := range []string{"read", "dlv"} {
		if err := s.putTombstone(markerSubj(cv, uid, k)); err != nil {
			return err
		}
	}
	return s.putRecord(dmFloorSubj(cv, uid), []byte(strconv.FormatUint(ap.Event.Seq, 10)))
}

func (s *Store) putTombstone(subject string) error {
	m := &jetstreamMsg{subject: subject}
	err := s.do(func(ctx context.Context) error {
		_, err := s.js.PublishMsg(ctx, m.nats())
		return err
	})
	if err != nil {
		return fmt.Errorf("jetstore: clear %s: %w", subject, err)
	}
	return nil
}
