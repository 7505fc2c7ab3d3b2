package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// cmdConsume prints the values of a topic's records, one per line. Without
// --group it reads every partition directly and commits nothing. It never
// waits in silence: the broker must answer within --timeout at the start,
// and again whenever --timeout passes without a record, else it exits 1
// naming the address; --idle-timeout (no record for that long, the broker
// still answering) is the only quiet way out besides -n and Ctrl-C.
func cmdConsume(ctx context.Context, args []string, io stdio) error {
	fs := newFlagSet("consume", "consume [--brokers HOST:PORT,...] [--topic T] [--from-beginning] [-n N] [--idle-timeout D] [--group G] [--print-key] [--print-headers] [--format FMT] [--timeout D]", io.err)
	var cf clientFlags
	cf.register(fs)
	topic := fs.String("topic", "", "`TOPIC` to read (default: the appliance's results topic, inference_results)")
	fromBeginning := fs.Bool("from-beginning", false, "start at the oldest retained record instead of the end")
	n := fs.Int("n", 0, "exit after `N` records (0: run until interrupted)")
	idle := fs.Duration("idle-timeout", 0, "exit (0) when no record arrives for this long while the broker answers (0: wait forever)")
	group := fs.String("group", "", "consume in this consumer `GROUP` and commit what was printed (default: no group)")
	printKey := fs.Bool("print-key", false, "print KEY<TAB>VALUE (the same as --format '%k\\t%s\\n')")
	printHeaders := fs.Bool("print-headers", false, "print the headers first: K=V,K=V<TAB>VALUE (with --print-key: KEY<TAB>HEADERS<TAB>VALUE)")
	format := fs.String("format", "", "output `FORMAT`"+`, as kcat's -f: %t topic, %p partition, %o offset, %k key, %s value, %h headers (K=V,K=V), `+
		`%T timestamp (ms), %K key size, %S value size (bytes), %% a percent sign; \n \t \\ escapes (default '%s\n')`)
	uncommitted := fs.Bool("read-uncommitted", false, "also show records of open or aborted transactions (default: read_committed)")
	if err := fs.Parse(args); err != nil {
		return helpOrUsage(err)
	}
	if fs.NArg() > 0 {
		return usageErr(fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if *n < 0 {
		return usageErr(errors.New("-n must be >= 0"))
	}
	if *format != "" && (*printKey || *printHeaders) {
		return usageErr(errors.New("--format replaces --print-key and --print-headers: use %k and %h in it"))
	}
	f := "%s\n"
	switch {
	case *format != "":
		f = *format
	case *printKey && *printHeaders:
		f = "%k\t%h\t%s\n"
	case *printKey:
		f = "%k\t%s\n"
	case *printHeaders:
		f = "%h\t%s\n"
	}
	render, err := parseFormat(f)
	if err != nil {
		return usageErr(fmt.Errorf("--format: %w", err))
	}
	t, err := cf.client(io.environ)
	if err != nil {
		return err
	}
	if *topic == "" {
		*topic = t.resultsTopic()
	}
	start := kgo.NewOffset().AtEnd()
	if *fromBeginning {
		start = kgo.NewOffset().AtStart()
	}
	opts := []kgo.Opt{kgo.ConsumeTopics(*topic), kgo.ConsumeResetOffset(start)}
	if !*uncommitted {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	if *group != "" {
		opts = append(opts, kgo.ConsumerGroup(*group), kgo.DisableAutoCommit())
	}
	cl, err := t.connect(ctx, *topic, opts...)
	if err != nil {
		return err
	}
	defer cl.Close()

	out := bufio.NewWriter(io.out)
	defer out.Flush()
	printed := 0
	lastRecord := time.Now()
	var buf []byte
	for {
		wait := t.timeout
		if *idle > 0 {
			wait = min(wait, max(*idle-time.Since(lastRecord), time.Millisecond))
		}
		pollCtx, cancel := context.WithTimeout(ctx, wait)
		fetches := cl.PollRecords(pollCtx, 1000)
		cancel()
		if ctx.Err() != nil {
			return nil // interrupted: a normal way to stop
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("fetching %s[%d]: %w", t, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		if fetches.NumRecords() == 0 {
			// Quiet for a while: tell "no records" from "no broker".
			pctx, cancel := context.WithTimeout(ctx, t.timeout)
			err := cl.Ping(pctx)
			cancel()
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				return t.unreachable("an answer (no record for "+time.Since(lastRecord).Round(time.Second).String()+", then a ping failed)", err)
			}
			if *idle > 0 && time.Since(lastRecord) >= *idle {
				return nil
			}
			continue
		}
		lastRecord = time.Now()
		var done []*kgo.Record
		stop := false
		fetches.EachRecord(func(r *kgo.Record) {
			if stop {
				return
			}
			buf = render(buf[:0], r)
			out.Write(buf)
			done = append(done, r)
			printed++
			stop = *n > 0 && printed >= *n
		})
		if err := out.Flush(); err != nil {
			return err
		}
		if *group != "" && len(done) > 0 {
			commitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.timeout)
			err := cl.CommitRecords(commitCtx, done...)
			cancel()
			if err != nil {
				return fmt.Errorf("committing offsets to the broker at %s: %w", t.addrs(), err)
			}
		}
		if stop {
			return nil
		}
	}
}

// parseFormat compiles a kcat-style format into a function appending one
// record's line to a buffer.
func parseFormat(f string) (func([]byte, *kgo.Record) []byte, error) {
	type part struct {
		lit  string
		verb byte
	}
	var parts []part
	var lit []byte
	flush := func() {
		if len(lit) > 0 {
			parts = append(parts, part{lit: string(lit)})
			lit = nil
		}
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		switch {
		case c == '\\' && i+1 < len(f):
			i++
			switch f[i] {
			case 'n':
				lit = append(lit, '\n')
			case 't':
				lit = append(lit, '\t')
			case 'r':
				lit = append(lit, '\r')
			case '\\':
				lit = append(lit, '\\')
			default:
				return nil, fmt.Errorf("unknown escape \\%c (use \\n, \\t, \\r or \\\\)", f[i])
			}
		case c == '%' && i+1 < len(f):
			i++
			switch v := f[i]; v {
			case '%':
				lit = append(lit, '%')
			case 't', 'p', 'o', 'k', 's', 'h', 'T', 'K', 'S':
				flush()
				parts = append(parts, part{verb: v})
			default:
				return nil, fmt.Errorf("unknown verb %%%c (use %%t %%p %%o %%k %%s %%h %%T %%K %%S %%%%)", v)
			}
		case c == '%':
			return nil, errors.New("a lone % at the end (write %% for a percent sign)")
		default:
			lit = append(lit, c)
		}
	}
	flush()
	return func(b []byte, r *kgo.Record) []byte {
		for _, p := range parts {
			switch p.verb {
			case 0:
				b = append(b, p.lit...)
			case 't':
				b = append(b, r.Topic...)
			case 'p':
				b = strconv.AppendInt(b, int64(r.Partition), 10)
			case 'o':
				b = strconv.AppendInt(b, r.Offset, 10)
			case 'k':
				b = append(b, r.Key...)
			case 's':
				b = append(b, r.Value...)
			case 'h':
				for i, h := range r.Headers {
					if i > 0 {
						b = append(b, ',')
					}
					b = append(b, h.Key...)
					b = append(b, '=')
					b = append(b, h.Value...)
				}
			case 'T':
				b = strconv.AppendInt(b, r.Timestamp.UnixMilli(), 10)
			case 'K':
				b = strconv.AppendInt(b, int64(len(r.Key)), 10)
			case 'S':
				b = strconv.AppendInt(b, int64(len(r.Value)), 10)
			}
		}
		return b
	}, nil
}
