package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/appliance"
	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/pipeline"
	"github.com/infergate/infergate/inference/tfserving"
)

// headerFlags collects repeated --header key=value flags.
type headerFlags []kgo.RecordHeader

func (h *headerFlags) String() string { return "" }
func (h *headerFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not key=value", s)
	}
	*h = append(*h, kgo.RecordHeader{Key: k, Value: []byte(v)})
	return nil
}

// cmdProduce sends JSON lines as records: one line, one record. Every line
// is checked before the first is sent (JSON; for the requests topic also the
// request format and the model's signature, as the pipeline will), so a bad
// line 3 does not leave lines 1-2 sent and a rerun of the fixed file
// duplicating them. It reports how many the broker acknowledged, and fails
// if any was not.
func cmdProduce(ctx context.Context, args []string, io stdio) error {
	fs := newFlagSet("produce", "produce [--brokers HOST:PORT,...] [--topic T] [--key-field F] [--header K=V]... [--no-validate] [--transactional] [--timeout D] [FILE]", io.err)
	var cf clientFlags
	cf.register(fs)
	topic := fs.String("topic", "", "`TOPIC` to produce to (default: the appliance's requests topic, inference_requests)")
	keyField := fs.String("key-field", "", "use this top-level JSON `FIELD` (string or number) of each line as the record key, e.g. request_id")
	transactional := fs.Bool("transactional", false, "send every line in one Kafka transaction, committed only if the broker acknowledged all of them: the pipeline (which reads committed records only) gets all of them or none, whatever fails halfway (a record the broker refuses, a broker going away, Ctrl-C)")
	noValidate := fs.Bool("no-validate", false, "send lines as they are: no check that each is JSON and, for the requests topic, a request the model accepts (--key-field still needs its field)")
	var headers headerFlags
	fs.Var(&headers, "header", "add a record header `K=V` to every record (repeatable), e.g. --header model=demo")
	if err := fs.Parse(args); err != nil {
		return helpOrUsage(err)
	}
	if fs.NArg() > 1 {
		return usageErr(fmt.Errorf("at most one FILE, got %q", fs.Args()))
	}
	t, err := cf.client(io.environ)
	if err != nil {
		return err
	}
	if *topic == "" {
		*topic = t.requestsTopic()
	}

	src := lineSource{in: io.in, name: "stdin"}
	if fs.NArg() == 1 && fs.Arg(0) != "-" {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return usageErr(err)
		}
		defer f.Close()
		src = lineSource{in: f, name: fs.Arg(0), file: f}
	}

	// First pass: check every line; nothing is sent if one is bad.
	var chk *requestChecker
	if !*noValidate && *topic == t.requestsTopic() {
		chk = newRequestChecker(t, headers)
		defer chk.close()
	}
	var bad []string
	badLines, lines := 0, 0
	err = src.each(func(lineNo int, line []byte) error {
		lines++
		var problem error
		switch {
		case *keyField != "":
			// The key must be read, --no-validate or not.
			if _, err := jsonKey(line, *keyField); err != nil {
				problem = err
			}
		case *noValidate:
			return nil
		case !json.Valid(line):
			problem = errors.New("not valid JSON")
		}
		if problem == nil && chk != nil && !*noValidate {
			problem = chk.check(ctx, line)
		}
		if problem != nil {
			badLines++
			if len(bad) < maxReported {
				bad = append(bad, fmt.Sprintf("%s line %d: %v", src.name, lineNo, problem))
			}
		}
		return ctx.Err()
	})
	if err != nil {
		return err
	}
	if chk != nil && chk.warning != "" {
		fmt.Fprintln(io.err, "WARNING:", chk.warning)
	}
	if badLines > 0 {
		for _, b := range bad {
			fmt.Fprintln(io.err, b)
		}
		if badLines > len(bad) {
			fmt.Fprintf(io.err, "... and %d more invalid lines\n", badLines-len(bad))
		}
		return usageErr(fmt.Errorf("nothing was sent: %d of %d lines are invalid (fix them, or send as is with --no-validate)", badLines, lines))
	}

	opts := []kgo.Opt{kgo.DefaultProduceTopic(*topic),
		// A delivery the broker does not acknowledge in time fails
		// instead of being retried for kgo's default of forever.
		kgo.RecordDeliveryTimeout(t.timeout), kgo.ProduceRequestTimeout(t.timeout)}
	if *transactional {
		// An id of this run alone: two produce commands must not fence
		// each other.
		opts = append(opts, kgo.TransactionalID(fmt.Sprintf("infergate-produce-%d-%d", os.Getpid(), time.Now().UnixNano())))
	}
	cl, err := t.connect(ctx, *topic, opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	if !*noValidate {
		// The last check needs the broker: a line the topic cannot take
		// would be refused alone, leaving the others sent.
		if err := checkSizes(ctx, cl, t, &src, *topic, *keyField, headers, lines, io); err != nil {
			return err
		}
	}
	if *transactional {
		if err := cl.BeginTransaction(); err != nil {
			return fmt.Errorf("beginning a transaction with the broker at %s: %w", t.addrs(), err)
		}
	}

	var (
		acked    atomic.Int64
		failOnce sync.Once
		failed   error
		sent     int64
	)
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			failOnce.Do(func() { failed = err })
			return
		}
		acked.Add(1)
	}
	readErr := src.each(func(_ int, line []byte) error {
		r := &kgo.Record{Value: line, Headers: append([]kgo.RecordHeader(nil), headers...)}
		if *keyField != "" {
			r.Key, _ = jsonKey(line, *keyField) // checked in the first pass
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		cl.Produce(ctx, r, promise)
		sent++
		return nil
	})
	// Whatever was handed to the client is flushed even when reading
	// stopped (interrupted), so the count below is what the broker has.
	flushErr := cl.Flush(context.WithoutCancel(ctx))
	n := acked.Load()
	if *transactional {
		return endTransaction(ctx, cl, t, io, *topic, n, sent, errors.Join(readErr, failed, flushErr))
	}
	fmt.Fprintf(io.err, "produced %d of %d records to %s (acknowledged by the broker at %s)\n", n, sent, *topic, t.addrs())
	var sendErr error
	switch {
	case failed != nil:
		if errors.Is(failed, kgo.ErrRecordTimeout) {
			failed = fmt.Errorf("gave up after %s (--timeout) waiting for the broker at %s to acknowledge them: %w", t.timeout, t.addrs(), failed)
		}
		sendErr = fmt.Errorf("%d of %d records were not acknowledged: %w", sent-n, sent, failed)
		if errors.Is(failed, kerr.UnknownTopicOrPartition) {
			sendErr = fmt.Errorf("%w (does topic %s exist?)", sendErr, *topic)
		}
	case flushErr != nil:
		sendErr = flushErr
	}
	return errors.Join(readErr, sendErr)
}

// producerBatchMax is kgo's own limit on a record batch (ProducerBatchMaxBytes'
// default), which refuses a record before the broker sees it.
const producerBatchMax = 1000012

// checkSizes refuses the input, naming each line, when a line with its key,
// headers and framing is larger than the topic's max.message.bytes (or the
// client's batch limit): the broker would refuse that record alone.
func checkSizes(ctx context.Context, cl *kgo.Client, t *target, src *lineSource, topic, keyField string, headers headerFlags, lines int, io stdio) error {
	lctx, cancel := context.WithTimeout(ctx, t.timeout)
	lims, _ := pipeline.TopicLimits(lctx, kadm.NewClient(cl), topic) // unreadable: Kafka's default
	cancel()
	limit := min(lims[topic], producerBatchMax)
	var big []string
	n := 0
	err := src.each(func(lineNo int, line []byte) error {
		r := &kgo.Record{Value: line, Headers: headers}
		if keyField != "" {
			r.Key, _ = jsonKey(line, keyField) // checked in the first pass
		}
		if size := pipeline.WireSize(r); size > limit {
			n++
			if len(big) < maxReported {
				big = append(big, fmt.Sprintf("%s line %d: %s with its key, headers and framing; topic %s takes at most %s a record (max.message.bytes)",
					src.name, lineNo, formatBytes(int64(size)), topic, formatBytes(int64(limit))))
			}
		}
		return ctx.Err()
	})
	if err != nil || n == 0 {
		return err
	}
	for _, b := range big {
		fmt.Fprintln(io.err, b)
	}
	if n > len(big) {
		fmt.Fprintf(io.err, "... and %d more lines too large\n", n-len(big))
	}
	return usageErr(fmt.Errorf("nothing was sent: %d of %d lines are too large for topic %s (split them, or send as is with --no-validate)", n, lines, topic))
}

// endTransaction commits produce's transaction when every record was
// acknowledged and nothing failed, else aborts it, and says which.
func endTransaction(ctx context.Context, cl *kgo.Client, t *target, io stdio, topic string, acked, sent int64, failed error) error {
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.timeout)
	defer cancel()
	if failed == nil && acked == sent {
		err := cl.EndTransaction(ectx, kgo.TryCommit)
		if err == nil {
			fmt.Fprintf(io.err, "produced %d records to %s in one transaction, committed (broker at %s)\n", sent, topic, t.addrs())
			return nil
		}
		failed = fmt.Errorf("committing the transaction: %w", err)
	}
	if errors.Is(failed, kgo.ErrRecordTimeout) {
		failed = fmt.Errorf("gave up after %s (--timeout) waiting for the broker at %s to acknowledge them: %w", t.timeout, t.addrs(), failed)
	}
	if errors.Is(failed, kerr.UnknownTopicOrPartition) {
		failed = fmt.Errorf("%w (does topic %s exist?)", failed, topic)
	}
	if err := cl.EndTransaction(ectx, kgo.TryAbort); err != nil {
		// The broker aborts it by itself after the transaction timeout.
		return fmt.Errorf("%d of %d records acknowledged, then aborting the transaction failed (the broker aborts it after its timeout): %w; the first failure: %w", acked, sent, err, failed)
	}
	fmt.Fprintf(io.err, "sent %d of %d records to %s, transaction aborted: none of them will be read by the pipeline (it reads committed records only); fix the cause and rerun the whole input\n", acked, sent, topic)
	return fmt.Errorf("transaction aborted: %w", failed)
}

// maxReported is how many invalid lines produce lists before summing up.
const maxReported = 20

// lineSource is produce's input, read twice: once to check, once to send.
// A file is read again from its start; stdin is kept in memory.
type lineSource struct {
	in   io.Reader
	name string
	file *os.File
	kept [][]byte
	read bool
}

func (s *lineSource) each(fn func(lineNo int, line []byte) error) error {
	if s.read && s.file == nil {
		for i, l := range s.kept {
			if l == nil {
				continue
			}
			if err := fn(i+1, l); err != nil {
				return err
			}
		}
		return nil
	}
	if s.read {
		if _, err := s.file.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("reading %s again: %w", s.name, err)
		}
	}
	first := !s.read
	s.read = true
	return readLines(s.in, func(lineNo int, line []byte) error {
		if first && s.file == nil {
			for len(s.kept) < lineNo-1 {
				s.kept = append(s.kept, nil) // blank lines keep the numbering
			}
			s.kept = append(s.kept, line)
		}
		return fn(lineNo, line)
	})
}

// requestChecker checks request lines as the pipeline will decode them,
// against the signature of the model each names, read from the appliance's
// model server.
type requestChecker struct {
	headerModel  string
	defaultModel string
	client       *tfserving.Client
	addr         string
	timeout      time.Duration
	meta         map[model.Spec]metaAnswer
	// warning says why signatures could not be checked (model server not
	// reachable): the format was checked, the shapes were not.
	warning string
}

type metaAnswer struct {
	md  *model.Metadata
	err error
}

func newRequestChecker(t *target, headers []kgo.RecordHeader) *requestChecker {
	c := &requestChecker{defaultModel: t.defaultModel(), timeout: t.timeout, meta: map[model.Spec]metaAnswer{}}
	for _, h := range headers {
		if h.Key == pipeline.HeaderModel {
			c.headerModel = string(h.Value)
		}
	}
	var addrs []string
	switch {
	case t.ep != nil:
		addrs = t.ep.ModelServerGRPC
	case t.cfg.ModelServer.Mode == appliance.ModelServerExternal:
		addrs = t.cfg.ModelServer.TFServingEndpoints
	case t.cfg.ModelServer.GRPCListen != "":
		addrs = []string{dialable(t.cfg.ModelServer.GRPCListen)}
	}
	if len(addrs) == 0 {
		c.warning = "the appliance's model server has no gRPC address (model_server.grpc_listen is empty): requests were checked for their format, not against the model's signature"
		return c
	}
	c.addr = addrs[0]
	cc := tfserving.DefaultConfig(c.addr)
	if t.timeout > 0 {
		cc.Timeout = t.timeout
	}
	cl, err := tfserving.Dial(cc)
	if err != nil {
		c.warning = fmt.Sprintf("requests were checked for their format, not against the model's signature: %v", err)
		return c
	}
	c.client = cl
	return c
}

func (c *requestChecker) close() {
	if c.client != nil {
		c.client.Close()
	}
}

// metadata reads a model's signature once per spec.
func (c *requestChecker) metadata(ctx context.Context, spec model.Spec) (*model.Metadata, error) {
	if a, ok := c.meta[spec]; ok {
		return a.md, a.err
	}
	md, err := c.client.Metadata(ctx, spec)
	c.meta[spec] = metaAnswer{md, err}
	return md, err
}

func (c *requestChecker) check(ctx context.Context, line []byte) error {
	var meta func(context.Context, model.Spec) (*model.Metadata, error)
	if c.client != nil {
		meta = c.metadata
	}
	_, err := pipeline.CheckRequest(ctx, line, c.headerModel, c.defaultModel, meta)
	if errors.Is(err, pipeline.ErrNoMetadata) {
		if c.warning == "" {
			c.warning = fmt.Sprintf("requests were checked for their format, not against the model's signature: %v", err)
		}
		return nil
	}
	if err != nil {
		if class := pipeline.Class(err); class != "" {
			return fmt.Errorf("%s error: %w (the pipeline would dead-letter it)", class, err)
		}
	}
	return err
}

// readLines calls fn for each non-blank line (without its newline), with no
// limit on line length.
func readLines(r io.Reader, fn func(lineNo int, line []byte) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			line = bytes.TrimRight(line, "\r\n")
			if len(bytes.TrimSpace(line)) > 0 {
				if ferr := fn(lineNo, line); ferr != nil {
					return ferr
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// jsonKey returns the value of a top-level field as key bytes.
func jsonKey(line []byte, field string) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil {
		return nil, fmt.Errorf("--key-field %s: the line is not a JSON object", field)
	}
	raw, ok := obj[field]
	if !ok {
		return nil, fmt.Errorf("--key-field %s: no such field", field)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return []byte(s), nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		if _, err := strconv.ParseFloat(string(n), 64); err == nil {
			return []byte(n.String()), nil
		}
	}
	return nil, fmt.Errorf("--key-field %s: value %s is not a string or number", field, raw)
}
