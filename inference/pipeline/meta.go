package pipeline

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/recordcodec"
)

// metaKey is the part of a model spec that selects a model version.
type metaKey struct {
	name    string
	version int64
	label   string
}

func (k metaKey) spec() model.Spec {
	return model.Spec{Name: k.name, Version: k.version, Label: k.label}
}

func (k metaKey) String() string {
	switch {
	case k.label != "":
		return fmt.Sprintf("%s@%s", k.name, k.label)
	case k.version != 0:
		return fmt.Sprintf("%s/%d", k.name, k.version)
	}
	return k.name
}

// metaEntry is the cached metadata of one model spec, with what the pipeline
// derives from each signature.
type metaEntry struct {
	key     metaKey
	meta    *model.Metadata
	err     error     // a cached answer "no such model" (class validation)
	expires time.Time // of a cached error
	stale   atomic.Bool

	mu   sync.Mutex
	sigs map[string]*sigInfo
}

// sigInfo is one signature, prepared for decoding and batching.
type sigInfo struct {
	*recordcodec.Signature
	// fixed: every input's dimensions after the batch dimension are known,
	// so requests need no shape in their batching key.
	fixed bool
}

func newSigInfo(name string, sig *model.Signature, defaultInput string) *sigInfo {
	si := &sigInfo{Signature: recordcodec.NewSignature(name, sig, defaultInput), fixed: true}
	for _, in := range sig.Inputs {
		if in.Shape == nil {
			si.fixed = false
		}
		for _, d := range in.Shape[min(1, len(in.Shape)):] {
			if d < 0 {
				si.fixed = false
			}
		}
	}
	return si
}

// signature returns the prepared signature the request names.
func (e *metaEntry) signature(name, defaultInput string) (*sigInfo, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if si, ok := e.sigs[name]; ok {
		return si, nil
	}
	sig, ok := e.meta.Signatures[name]
	if !ok {
		return nil, validationErr("model %s has no signature %q", e.key, name)
	}
	if e.sigs == nil {
		e.sigs = make(map[string]*sigInfo)
	}
	si := newSigInfo(name, sig, defaultInput)
	e.sigs[name] = si
	return si, nil
}

// metaCache caches model metadata per spec so that decoding a request does
// not cost a model server round trip. An entry is refetched when marked stale
// (the model server answered NOT_FOUND or served another version than the
// metadata describes); "no such model" is cached for negTTL so a stream of
// requests for a missing model does not become a stream of Metadata calls.
type metaCache struct {
	pred   Predictor
	negTTL time.Duration
	limit  int

	mu sync.Mutex
	m  map[metaKey]*metaEntry
}

func newMetaCache(pred Predictor) *metaCache {
	return &metaCache{pred: pred, negTTL: time.Second, limit: 4096, m: make(map[metaKey]*metaEntry)}
}

// lookup returns the entry for key. Its error is of class validation when the
// model server says the model does not exist, and is returned unclassified
// otherwise (the caller sorts unavailability from the rest with classOf).
func (c *metaCache) lookup(ctx context.Context, key metaKey, timeout time.Duration) (*metaEntry, error) {
	if e := c.cached(key); e != nil {
		return e, e.err
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	md, err := c.pred.Metadata(cctx, key.spec())
	cancel()
	e := &metaEntry{key: key, meta: md}
	if err != nil {
		switch status.Code(err) {
		case codes.NotFound, codes.InvalidArgument, codes.FailedPrecondition:
			e.err = validationErr("model %s: %s", key, status.Convert(err).Message())
			e.expires = time.Now().Add(c.negTTL)
		default:
			return nil, err
		}
	} else if md == nil {
		return nil, fmt.Errorf("model %s: model server returned no metadata", key)
	}
	c.mu.Lock()
	if len(c.m) >= c.limit {
		for k, old := range c.m {
			if old.err != nil {
				delete(c.m, k)
			}
		}
		if len(c.m) >= c.limit {
			clear(c.m)
		}
	}
	c.m[key] = e
	c.mu.Unlock()
	return e, e.err
}

// cached returns the entry for key if it is fresh, else nil.
func (c *metaCache) cached(key metaKey) *metaEntry {
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && !e.stale.Load() && (e.err == nil || time.Now().Before(e.expires)) {
		return e
	}
	return nil
}
