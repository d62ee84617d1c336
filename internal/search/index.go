package search

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/analysis"
	"github.com/blevesearch/bleve/v2/analysis/analyzer/custom"
	"github.com/blevesearch/bleve/v2/analysis/analyzer/keyword"
	"github.com/blevesearch/bleve/v2/analysis/char/asciifolding"
	"github.com/blevesearch/bleve/v2/analysis/token/lowercase"
	"github.com/blevesearch/bleve/v2/analysis/tokenizer/unicode"
	"github.com/blevesearch/bleve/v2/index/scorch"
	"github.com/blevesearch/bleve/v2/mapping"
	"github.com/blevesearch/bleve/v2/registry"
	"github.com/blevesearch/bleve/v2/search/highlight"
	htmlformat "github.com/blevesearch/bleve/v2/search/highlight/format/html"
	simplefrag "github.com/blevesearch/bleve/v2/search/highlight/fragmenter/simple"
	simplehl "github.com/blevesearch/bleve/v2/search/highlight/highlighter/simple"
	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/im"
)

// Names registered with bleve (its registry is global).
const (
	analyzerName    = "tern"
	foldName        = "tern-fold"
	highlighterName = "tern-hl"
	// snippet is the length of hl, in bytes of the original text.
	snippet = 100
)

// Index fields.
const (
	fBody = "b"    // text
	fCV   = "cv"   // keyword
	fFrom = "from" // keyword
	fBlk  = "sb"   // keyword: the block of seq (membership windows)
	fDay  = "d"    // keyword: the day of ts (look-back windows, retention)
	fExp  = "x"    // keyword: the day after which a disappearing message is gone
	fUser = "mu"   // keyword, on membership documents
	fID   = "id"   // keyword with doc values: the sort key
)

// cursorKey is the internal key of the last event id indexed.
var cursorKey = []byte("cursor")

// schemaKey is the internal key of the index's schema version, schema
// the version this code writes. An index of another version (or of none:
// before versions, seq was a number) is rebuilt from the store at Open.
var (
	schemaKey = []byte("schema")
	schema    = []byte("2")
)

func init() {
	// ASCII folding as a token filter: as a char filter it would shift
	// the token offsets the snippets are cut at ("é" is two bytes, "e" one).
	must(registry.RegisterTokenFilter(foldName, func(map[string]any, *registry.Cache) (analysis.TokenFilter, error) {
		return foldFilter{asciifolding.New()}, nil
	}))
	must(registry.RegisterHighlighter(highlighterName, func(map[string]any, *registry.Cache) (highlight.Highlighter, error) {
		return simplehl.NewHighlighter(simplefrag.NewFragmenter(snippet),
			htmlformat.NewFragmentFormatter("<mark>", "</mark>"), "…"), nil
	}))
}

func must(err error) {
	if err != nil {
		panic(err) // registration of static names at init
	}
}

// foldFilter folds each token to ASCII (é → e, ß → ss), keeping its
// offsets.
type foldFilter struct {
	f *asciifolding.AsciiFoldingFilter
}

func (f foldFilter) Filter(in analysis.TokenStream) analysis.TokenStream {
	for _, t := range in {
		t.Term = f.f.Filter(t.Term)
	}
	return in
}

// newMapping is the index mapping: message documents (b, cv, from, seq,
// d, x, id) and membership documents (mu), nothing dynamic.
func newMapping() (mapping.IndexMapping, error) {
	m := bleve.NewIndexMapping()
	if err := m.AddCustomAnalyzer(analyzerName, map[string]any{
		"type":          custom.Name,
		"tokenizer":     unicode.Name,
		"token_filters": []string{lowercase.Name, foldName},
	}); err != nil {
		return nil, err
	}
	m.DefaultAnalyzer = analyzerName
	m.StoreDynamic, m.IndexDynamic, m.DocValuesDynamic = false, false, false
	text := bleve.NewTextFieldMapping()
	text.Analyzer = analyzerName
	text.Store = true // snippets are cut from the stored text
	text.IncludeTermVectors = true
	text.IncludeInAll, text.DocValues = false, false
	kw := bleve.NewKeywordFieldMapping()
	kw.Analyzer = keyword.Name
	kw.Store, kw.IncludeTermVectors, kw.IncludeInAll, kw.DocValues = false, false, false, false
	doc := bleve.NewDocumentStaticMapping()
	doc.AddFieldMappingsAt(fBody, text)
	doc.AddFieldMappingsAt(fCV, kw)
	doc.AddFieldMappingsAt(fFrom, kw)
	doc.AddFieldMappingsAt(fUser, kw)
	// Sorting by _id loads each match's stored fields to read its id;
	// doc values are read column-wise, without the text.
	sortKey := bleve.NewKeywordFieldMapping()
	sortKey.Analyzer = keyword.Name
	sortKey.Store, sortKey.IncludeTermVectors, sortKey.IncludeInAll = false, false, false
	sortKey.DocValues = true
	doc.AddFieldMappingsAt(fID, sortKey)
	doc.AddFieldMappingsAt(fBlk, kw)
	doc.AddFieldMappingsAt(fDay, kw)
	doc.AddFieldMappingsAt(fExp, kw)
	// No field goes into the composite _all field; left enabled, bleve
	// still builds it (empty) for every document: 15 % of indexing.
	doc.AddSubDocumentMapping("_all", bleve.NewDocumentDisabledMapping())
	m.DefaultMapping = doc
	return m, m.Validate()
}

// persistNap is the least time between two writes of new segments to
// disk (see scorchConfig).
const persistNap = 2 * time.Second

// scorchConfig is the engine's configuration. A batch returns once bleve
// holds its segment in memory (unsafe_batch); the persister writes
// segments to disk on its own, at most every persistNap, after merging
// what gathered meanwhile in memory. Each write ends in fsyncs, which the
// store's own fsync per commit would queue behind on the same disk: a
// write per batch made acknowledgements wait. A crash loses only segments
// not written yet, together with the cursor persisted with them, so the
// index takes those events again from the store.
func scorchConfig() map[string]any {
	return map[string]any{
		"unsafe_batch": true,
		"scorchPersisterOptions": map[string]any{
			"PersisterNapTimeMSec":      int(persistNap / time.Millisecond),
			"PersisterNapUnderNumFiles": 1000,
		},
	}
}

// Source is what the index reads from the store: committed events by
// position, and a message by id (the target of an edit).
type Source interface {
	im.Feed
	EventByID(id ulid.ULID) (im.Event, error)
}

// Options configure an Index.
type Options struct {
	// Source is the store the index follows (required).
	Source Source
	// Poll is how often the index looks for new events when nothing
	// kicks it (Kick is called after each commit); 0 means only Kick.
	Poll time.Duration
	// Batch is how many events are indexed per bleve batch (> 0).
	Batch int
	// Settle is the least time between two indexing passes: events
	// committed meanwhile are indexed together. Each pass writes at least
	// one bleve segment, so many small passes cost far more CPU per event
	// than fewer larger ones. 0 indexes at every commit.
	Settle time.Duration
	// Retention drops messages older than this from the index, as the
	// store trims them (0: keep forever). Every PruneEvery (> 0) the
	// index removes those and the disappearing messages that expired.
	Retention, PruneEvery time.Duration
	// Log is the logger (nil: slog.Default()).
	Log *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Index is the search index. Its methods are safe for concurrent use.
type Index struct {
	o   Options
	dir string
	idx bleve.Index

	kick chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
	// catching serialises CatchUp (the goroutine and any caller).
	catching sync.Mutex

	mu      sync.Mutex
	cursor  ulid.ULID     // last event id indexed
	lag     time.Duration // see Lag
	changed chan struct{} // closed and replaced when cursor moves
	closed  bool

	rare uint64 // rareTerm (tests lower it)
}

// Errors.
var (
	ErrClosed = errors.New("search: index closed")
)

// Open opens the index in dir, creating it when absent. Start makes it
// follow o.Source; CatchUp indexes what is pending once.
func Open(dir string, o Options) (*Index, error) {
	if o.Source == nil || o.Batch <= 0 || o.PruneEvery <= 0 {
		return nil, errors.New("search: Source, a positive Batch and PruneEvery are required")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	idx, err := bleve.OpenUsing(dir, scorchConfig())
	if err == nil {
		if v, verr := idx.GetInternal(schemaKey); verr != nil || !bytes.Equal(v, schema) {
			o.Log.Warn("search: the index has an older format; rebuilding it from the store", "dir", dir, "schema", string(v))
			_ = idx.Close() // it is removed next
			if err = os.RemoveAll(dir); err != nil {
				return nil, fmt.Errorf("search: remove old index: %w", err)
			}
			err = bleve.ErrorIndexPathDoesNotExist
		}
	}
	if errors.Is(err, bleve.ErrorIndexPathDoesNotExist) {
		if err = create(dir); err == nil {
			idx, err = bleve.OpenUsing(dir, scorchConfig())
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open search index %q: %w", dir, err)
	}
	x := &Index{o: o, dir: dir, idx: idx, kick: make(chan struct{}, 1), stop: make(chan struct{}), changed: make(chan struct{}), rare: rareTerm}
	raw, err := idx.GetInternal(cursorKey)
	switch {
	case err != nil:
		_ = idx.Close() // the read error is the one to report
		return nil, fmt.Errorf("search: read cursor: %w", err)
	case len(raw) == len(x.cursor):
		copy(x.cursor[:], raw)
	case len(raw) != 0:
		_ = idx.Close()
		return nil, fmt.Errorf("search: cursor is %d bytes; rebuild with tern search reindex", len(raw))
	}
	return x, nil
}

// create makes an empty index in dir with its mapping and schema
// version, both on disk when it returns (a batch of the scorchConfig
// engine would not have written them yet).
func create(dir string) error {
	m, err := newMapping()
	if err != nil {
		return fmt.Errorf("search: mapping: %w", err)
	}
	idx, err := bleve.NewUsing(dir, m, scorch.Name, scorch.Name, nil)
	if err != nil {
		return err
	}
	return errors.Join(idx.SetInternal(schemaKey, schema), idx.Close())
}

// persist writes b and returns once it is on disk, or after a minute.
func (x *Index) persist(b *bleve.Batch) error {
	done := make(chan error, 1)
	b.SetPersistedCallback(func(err error) { done <- err })
	if err := x.idx.Batch(b); err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		return errors.New("search: not written to disk after a minute")
	}
}

// Start follows the source on a goroutine until Close: it indexes what
// is pending whenever kicked or every Poll, and prunes every PruneEvery.
func (x *Index) Start() {
	x.wg.Add(1)
	go x.run()
}

func (x *Index) run() {
	defer x.wg.Done()
	var poll <-chan time.Time
	if x.o.Poll > 0 {
		t := time.NewTicker(x.o.Poll)
		defer t.Stop()
		poll = t.C
	}
	prune := time.NewTicker(x.o.PruneEvery)
	defer prune.Stop()
	var last time.Time
	for {
		if wait := x.o.Settle - time.Since(last); x.o.Settle > 0 && wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-x.stop:
				t.Stop()
				return
			case <-t.C:
			}
		}
		last = time.Now()
		if _, err := x.CatchUp(context.Background()); err != nil && !errors.Is(err, ErrClosed) {
			x.o.Log.Error("search: indexing", "error", err)
		}
		select {
		case <-x.stop:
			return
		case <-x.kick:
		case <-poll:
		case <-prune.C:
			if n, err := x.Prune(); err != nil {
				x.o.Log.Error("search: prune", "error", err)
			} else if n > 0 {
				x.o.Log.Debug("search: pruned", "n", n)
			}
		}
	}
}

// Kick tells the index that events were committed (without blocking).
func (x *Index) Kick() {
	select {
	case x.kick <- struct{}{}:
	default:
	}
}

// Close stops following and closes the index.
func (x *Index) Close() error {
	x.mu.Lock()
	if x.closed {
		x.mu.Unlock()
		return nil
	}
	x.closed = true
	close(x.changed)
	x.mu.Unlock()
	close(x.stop)
	x.wg.Wait()
	// What bleve holds only in memory is written now, or the next start
	// would index it again.
	b := x.idx.NewBatch()
	cur := x.Cursor()
	b.SetInternal(cursorKey, cur[:])
	return errors.Join(x.persist(b), x.idx.Close())
}

// Cursor is the id of the last event indexed (zero: none).
func (x *Index) Cursor() ulid.ULID {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.cursor
}

// Lag is how far behind the index was at its last pass: the age of the
// newest event it indexed while more were waiting, 0 when it caught up.
func (x *Index) Lag() time.Duration {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.lag
}

// Wait returns once the index has indexed every event up to id, or with
// ctx's error, or ErrClosed.
func (x *Index) Wait(ctx context.Context, id ulid.ULID) error {
	for {
		x.mu.Lock()
		cur, ch, closed := x.cursor, x.changed, x.closed
		x.mu.Unlock()
		switch {
		case cur.Compare(id) >= 0:
			return nil
		case closed:
			return ErrClosed
		}
		x.Kick()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Bytes is the index's size on disk.
func (x *Index) Bytes() int64 { return DirBytes(x.dir) }

// DirBytes is the size on disk of the index in dir.
func DirBytes(dir string) int64 {
	var n int64
	// Files come and go while scorch merges: count what is there.
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// DocCount is the number of documents (messages and memberships).
func (x *Index) DocCount() (uint64, error) { return x.idx.DocCount() }

// CatchUp indexes every committed event after the cursor, in batches,
// until none is left or ctx is done, and returns how many events it read.
// Calls are serialised (with the goroutine Start runs, too).
func (x *Index) CatchUp(ctx context.Context) (int, error) {
	x.catching.Lock()
	defer x.catching.Unlock()
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		select {
		case <-x.stop:
			return total, ErrClosed
		default:
		}
		x.mu.Lock()
		cur := x.cursor
		x.mu.Unlock()
		evs, err := x.o.Source.After(cur, x.o.Batch)
		if err != nil {
			return total, fmt.Errorf("search: read events: %w", err)
		}
		if len(evs) == 0 {
			x.setLag(0)
			return total, nil
		}
		if err := x.apply(evs); err != nil {
			return total, err
		}
		total += len(evs)
		last := evs[len(evs)-1]
		lag := time.Duration(0)
		if len(evs) == x.o.Batch {
			lag = max(x.o.Now().Sub(time.UnixMilli(last.TS)), 0)
		}
		x.mu.Lock()
		x.cursor, x.lag = last.ID, lag
		if !x.closed {
			close(x.changed)
			x.changed = make(chan struct{})
		}
		x.mu.Unlock()
		if len(evs) < x.o.Batch {
			return total, nil
		}
	}
}

func (x *Index) setLag(d time.Duration) {
	x.mu.Lock()
	x.lag = d
	x.mu.Unlock()
}

// Times are kept per day (UTC days since 1970), as one keyword term each
// (a number costs bleve 16 terms per document, and a range over days
// enumerates few terms): pruning removes a message within a day of its
// end, and searches never show one earlier, since every hit is read back
// from the store.
func day(ms int64) string { return fmt.Sprintf("%07d", ms/int64(24*time.Hour/time.Millisecond)) }

// blockBits: a message's seq is indexed as its block, seq >> blockBits,
// one keyword term. A bleve number would cost 16 terms per document, as
// many as the text of a short message: a fifth of the indexing time. A
// membership window matches at block granularity, so the index returns
// the messages of the window plus those of at most two partial blocks
// (up to 1,023 on each side), and the caller, which reads every hit back
// from the store, checks the exact seq (im.Searcher).
const blockBits = 10

func block(seq uint64) string { return fmt.Sprintf("%010x", seq>>blockBits) }

func docOf(ev *im.Event, body string) map[string]any {
	d := map[string]any{fBody: body, fCV: ev.CV, fFrom: ev.From, fBlk: block(ev.Seq), fDay: day(ev.TS), fID: ev.ID.String()}
	if ev.TTL > 0 {
		d[fExp] = day(ev.TS + ev.TTL*1000)
	}
	return d
}

// joinedID is the id of the document saying uid was in cv.
func joinedID(uid, cv string) string { return "j\x00" + uid + "\x00" + cv }

// apply indexes evs (in commit order) in one batch with the new cursor.
// Within the batch a message may be edited or deleted by a later event.
func (x *Index) apply(evs []im.Event) error {
	b := x.idx.NewBatch()
	pending := map[ulid.ULID]map[string]any{}
	deleted := map[ulid.ULID]bool{}
	for i := range evs {
		ev := &evs[i]
		switch ev.T {
		case im.TMsg:
			if im.Searchable(ev) {
				d := docOf(ev, ev.B)
				pending[ev.ID] = d
				if err := b.Index(ev.ID.String(), d); err != nil {
					return fmt.Errorf("search: index %s: %w", ev.ID, err)
				}
			}
		case im.TEdit:
			if ev.Tgt == nil || ev.B == "" || deleted[*ev.Tgt] {
				continue
			}
			d, ok := pending[*ev.Tgt]
			if ok {
				d[fBody] = ev.B
			} else {
				var err error
				if d, err = x.edited(*ev.Tgt, ev.B); err != nil {
					return err
				}
				if d == nil {
					continue
				}
				pending[*ev.Tgt] = d
			}
			if err := b.Index(ev.Tgt.String(), d); err != nil {
				return fmt.Errorf("search: index %s: %w", ev.Tgt, err)
			}
		case im.TDel:
			if ev.Tgt != nil {
				b.Delete(ev.Tgt.String())
				delete(pending, *ev.Tgt)
				deleted[*ev.Tgt] = true
			}
		case im.TMember:
			if ev.CV == "" {
				continue
			}
			for _, uid := range ev.Who {
				if err := b.Index(joinedID(uid, ev.CV), map[string]any{fUser: uid}); err != nil {
					return fmt.Errorf("search: index member: %w", err)
				}
			}
		}
	}
	last := evs[len(evs)-1].ID
	b.SetInternal(cursorKey, last[:])
	if err := x.idx.Batch(b); err != nil {
		return fmt.Errorf("search: batch: %w", err)
	}
	return nil
}

// edited returns the document of message id with a new body, or nil
// when the message is not in the index (never indexed: E2EE; deleted;
// expired or trimmed).
func (x *Index) edited(id ulid.ULID, body string) (map[string]any, error) {
	doc, err := x.idx.Document(id.String())
	if err != nil {
		return nil, fmt.Errorf("search: read %s: %w", id, err)
	}
	if doc == nil {
		return nil, nil
	}
	ev, err := x.o.Source.EventByID(id)
	if errors.Is(err, im.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("search: read message %s: %w", id, err)
	}
	if !im.Searchable(&ev) {
		return nil, nil
	}
	return docOf(&ev, body), nil
}
