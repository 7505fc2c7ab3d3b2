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

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
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

// cmdProduce sends JSON lines as records: one line, one record. It reports
// how many the broker acknowledged, and fails if any was not.
func cmdProduce(ctx context.Context, args []string, io stdio) error {
	fs := newFlagSet("produce", "produce [--brokers HOST:PORT,...] [--topic T] [--key-field F] [--header K=V]... [--no-validate] [FILE]", io.err)
	var cf clientFlags
	cf.register(fs)
	topic := fs.String("topic", "", "topic to produce to (default: the appliance's requests topic, inference_requests)")
	keyField := fs.String("key-field", "", "use this top-level JSON field (string or number) of each line as the record key, e.g. request_id")
	noValidate := fs.Bool("no-validate", false, "send lines as they are, without checking that each is JSON")
	var headers headerFlags
	fs.Var(&headers, "header", "add a record header K=V to every record (repeatable), e.g. --header model=demo")
	if err := fs.Parse(args); err != nil {
		return helpOrUsage(err)
	}
	if fs.NArg() > 1 {
		return usageErr(fmt.Errorf("at most one FILE, got %q", fs.Args()))
	}
	if *noValidate && *keyField != "" {
		return usageErr(errors.New("--key-field reads JSON and cannot be combined with --no-validate"))
	}
	cc, cfg, err := cf.client(io.environ)
	if err != nil {
		return err
	}
	if *topic == "" {
		*topic = cfg.Topics.Requests
	}

	in := io.in
	name := "stdin"
	if fs.NArg() == 1 && fs.Arg(0) != "-" {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return usageErr(err)
		}
		defer f.Close()
		in, name = f, fs.Arg(0)
	}

	opts, err := cc.Opts()
	if err != nil {
		return usageErr(err)
	}
	opts = append(opts, kgo.DefaultProduceTopic(*topic),
		// A missing topic fails within a second or two instead of kgo's
		// four metadata rounds of 5 s: the appliance creates its topics,
		// so a missing one is a typo in --topic or the wrong --brokers.
		kgo.UnknownTopicRetries(2), kgo.MetadataMinAge(250*time.Millisecond))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()

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
	readErr := readLines(in, func(lineNo int, line []byte) error {
		if !*noValidate && !json.Valid(line) {
			return fmt.Errorf("%s line %d: not valid JSON (use --no-validate to send it anyway)", name, lineNo)
		}
		r := &kgo.Record{Value: line, Headers: append([]kgo.RecordHeader(nil), headers...)}
		if *keyField != "" {
			key, err := jsonKey(line, *keyField)
			if err != nil {
				return fmt.Errorf("%s line %d: %w", name, lineNo, err)
			}
			r.Key = key
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		cl.Produce(ctx, r, promise)
		sent++
		return nil
	})
	// Whatever was handed to the client is flushed even when reading
	// stopped at a bad line, so the count below is what the broker has.
	flushErr := cl.Flush(context.WithoutCancel(ctx))
	n := acked.Load()
	fmt.Fprintf(io.err, "produced %d of %d records to %s (acknowledged by the broker)\n", n, sent, *topic)
	var sendErr error
	switch {
	case failed != nil:
		sendErr = fmt.Errorf("%d of %d records were not acknowledged: %w", sent-n, sent, failed)
		if errors.Is(failed, kerr.UnknownTopicOrPartition) {
			sendErr = fmt.Errorf("%w (does topic %s exist?)", sendErr, *topic)
		}
	case flushErr != nil:
		sendErr = flushErr
	}
	if readErr != nil {
		return usageErr(errors.Join(readErr, sendErr))
	}
	return sendErr
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
