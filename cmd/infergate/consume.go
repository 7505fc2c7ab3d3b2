package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// cmdConsume prints the values of a topic's records, one per line. Without
// --group it reads every partition directly and commits nothing.
func cmdConsume(ctx context.Context, args []string, io stdio) error {
	fs := newFlagSet("consume", "consume [--brokers HOST:PORT,...] [--topic T] [--from-beginning] [-n N] [--idle-timeout D] [--group G]", io.err)
	var cf clientFlags
	cf.register(fs)
	topic := fs.String("topic", "", "topic to read (default: the appliance's results topic, inference_results)")
	fromBeginning := fs.Bool("from-beginning", false, "start at the oldest retained record instead of the end")
	n := fs.Int("n", 0, "exit after this many records (0: run until interrupted)")
	idle := fs.Duration("idle-timeout", 0, "exit when no record arrives for this long (0: wait forever)")
	group := fs.String("group", "", "consume in this consumer group and commit what was printed (default: no group)")
	printKey := fs.Bool("print-key", false, "print KEY<TAB>VALUE")
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
	cc, cfg, err := cf.client(io.environ)
	if err != nil {
		return err
	}
	if *topic == "" {
		*topic = cfg.Topics.Results
	}
	opts, err := cc.Opts()
	if err != nil {
		return usageErr(err)
	}
	start := kgo.NewOffset().AtEnd()
	if *fromBeginning {
		start = kgo.NewOffset().AtStart()
	}
	opts = append(opts, kgo.ConsumeTopics(*topic), kgo.ConsumeResetOffset(start))
	if !*uncommitted {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	if *group != "" {
		opts = append(opts, kgo.ConsumerGroup(*group), kgo.DisableAutoCommit())
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()

	out := bufio.NewWriter(io.out)
	defer out.Flush()
	printed := 0
	for {
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if *idle > 0 {
			pollCtx, cancel = context.WithTimeout(ctx, *idle)
		}
		fetches := cl.PollRecords(pollCtx, 1000)
		cancel()
		if ctx.Err() != nil {
			return nil // interrupted: a normal way to stop
		}
		if *idle > 0 && pollCtx.Err() != nil && fetches.NumRecords() == 0 {
			return nil
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
		var done []*kgo.Record
		stop := false
		fetches.EachRecord(func(r *kgo.Record) {
			if stop {
				return
			}
			if *printKey {
				out.Write(r.Key)
				out.WriteByte('\t')
			}
			out.Write(r.Value)
			out.WriteByte('\n')
			done = append(done, r)
			printed++
			stop = *n > 0 && printed >= *n
		})
		if err := out.Flush(); err != nil {
			return err
		}
		if *group != "" && len(done) > 0 {
			commitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			err := cl.CommitRecords(commitCtx, done...)
			cancel()
			if err != nil {
				return fmt.Errorf("committing offsets: %w", err)
			}
		}
		if stop {
			return nil
		}
	}
}
