package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/infergate/infergate/inference/demo"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Ingress protocols of `infergate bench --ingress`.
const (
	IngressMQTT = "mqtt"
	IngressNATS = "nats"
)

// IngressReport is the result of one ingress bench run: devices publish
// durable requests (MQTT QoS 1, or JetStream publishes into the inbox) and
// the latency is from the publish to the answer arriving back at the same
// device.
type IngressReport struct {
	Protocol      string      `json:"protocol"`
	Devices       int         `json:"devices"`
	Rate          string      `json:"rate"`
	DurationS     float64     `json:"duration_s"`
	WarmupS       float64     `json:"warmup_s"`
	Sent          int64       `json:"sent"`
	Acked         int64       `json:"acked"`
	Answered      int64       `json:"answered"`
	Lost          int64       `json:"lost"`
	ThroughputRPS float64     `json:"throughput_rps"`
	Latency       Percentiles `json:"latency"`
	AckLatency    Percentiles `json:"ack_latency"`
	// The publish -> answer latency in three stages, from the timestamps
	// the answer carries (the pipeline's result "timestamp" and
	// "latency_ms", measured from the request record's timestamp, which
	// the ingress's producer sets when it produces): In is the device's
	// publish to the ingress producing the request to Kafka (JetStream
	// store, PUBACK, inbox delivery), Pipeline the request record to the
	// result encoded, Out the result encoded to the answer at the device
	// (its produce, the answering group's fetch, the publish back).
	StageIn       Percentiles `json:"stage_in"`
	StagePipeline Percentiles `json:"stage_pipeline"`
	StageOut      Percentiles `json:"stage_out"`
	AnswerQoS     int         `json:"answer_qos"`
	// NATSOnly: no infergate, a bare nats-server and a relay client
	// answering each request (--nats-only), the protocol's ceiling here.
	NATSOnly string `json:"nats_only,omitempty"`
	// KafkaLoad is the rate of requests produced straight to the requests
	// topic beside the devices (--kafka-load), and what was produced of it
	// and failed.
	KafkaLoad         float64 `json:"kafka_load_rps,omitempty"`
	KafkaLoadProduced int64   `json:"kafka_load_produced,omitempty"`
	KafkaLoadFailed   int64   `json:"kafka_load_failed,omitempty"`
	// DevicesClosed is how many devices' connections nats-server closed
	// before the bench's end (a device is not reconnected: its publishes
	// stop, and its clean session's pending answers are dropped).
	DevicesClosed int      `json:"devices_closed"`
	ClosedErrors  []string `json:"closed_errors,omitempty"`
	// Unanswered says, when Lost > 0, where those requests are in Kafka.
	Unanswered *Unanswered `json:"unanswered,omitempty"`
	// CPU of this process (appliance and devices) in the measured window
	// and per answer, and the cores other processes kept busy meanwhile.
	CPUSeconds          float64  `json:"cpu_seconds"`
	CPUMicrosPerRequest float64  `json:"cpu_us_per_request"`
	OtherCores          float64  `json:"other_cores"`
	Errors              []string `json:"errors,omitempty"`
}

// OK is true when every acknowledged request was answered.
func (r *IngressReport) OK() bool { return r.Lost == 0 && len(r.Errors) == 0 }

func (r *IngressReport) print(w io.Writer, asJSON bool) error {
	if asJSON {
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(r)
	}
	what := "ingress"
	if r.NATSOnly != "" {
		what = "nats-server alone (" + r.NATSOnly + " relay, no infergate)"
	}
	_, err := fmt.Fprintf(w, `%s %s: %d devices, rate %s, %gs measured after %gs warmup
sent %d, acknowledged %d, answered %d, lost %d
throughput %.0f answers/s (publish -> answer at the device)
latency publish -> answer: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms
latency publish -> ack:    p50 %.2f ms, p99 %.2f ms
stages (p50 / p99): in %.2f / %.2f ms, pipeline %.2f / %.2f ms, out %.2f / %.2f ms (answer QoS %d)
cpu %.1f s in the window, %.1f µs per answer; other processes kept %.2f cores busy (%d CPUs)
`, what, r.Protocol, r.Devices, r.Rate, r.DurationS, r.WarmupS, r.Sent, r.Acked, r.Answered, r.Lost, r.ThroughputRPS,
		r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max, r.AckLatency.P50, r.AckLatency.P99,
		r.StageIn.P50, r.StageIn.P99, r.StagePipeline.P50, r.StagePipeline.P99, r.StageOut.P50, r.StageOut.P99, r.AnswerQoS,
		r.CPUSeconds, r.CPUMicrosPerRequest, r.OtherCores, runtime.NumCPU())
	if r.KafkaLoad > 0 {
		fmt.Fprintf(w, "beside: %g requests/s produced straight to Kafka (%d produced, %d failed)\n",
			r.KafkaLoad, r.KafkaLoadProduced, r.KafkaLoadFailed)
	}
	if r.DevicesClosed > 0 {
		fmt.Fprintf(w, "devices whose connection nats-server closed: %d (first: %v)\n", r.DevicesClosed, r.ClosedErrors)
	}
	if u := r.Unanswered; u != nil {
		fmt.Fprintf(w, "acknowledged, not answered at the device: %d (%d on closed devices): with a result in Kafka %d, request in Kafka without result %d, not in Kafka %d\n",
			u.Checked, u.OnClosedDevice, u.WithResult, u.RequestOnly, u.NotInKafka)
	}
	for _, e := range r.Errors {
		fmt.Fprintln(w, "error:", e)
	}
	return err
}

// ingressRun is the state the devices share.
type ingressRun struct {
	measureFrom, measureTo time.Time
	sent, acked, answered  atomic.Int64
	inWindow               atomic.Int64
	mu                     sync.Mutex
	lat, ackLat            *hdr.Histogram
	in, pipe, out          *hdr.Histogram
	errs                   []string
}

func (r *ingressRun) fail(err error) {
	r.mu.Lock()
	if len(r.errs) < 10 {
		r.errs = append(r.errs, err.Error())
	}
	r.mu.Unlock()
}

// sample records a latency of a request sent at sent.
func (r *ingressRun) sample(h *hdr.Histogram, sent time.Time, window bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.measured(sent) {
		return
	}
	if window {
		r.inWindow.Add(1)
	}
	recordLatency(h, time.Since(sent))
}

// measured reports whether a request sent at sent is in the measured
// window; called with mu held (the window is set once the devices are
// connected, while their read loops already run).
func (r *ingressRun) measured(sent time.Time) bool {
	return !r.measureFrom.IsZero() && !sent.Before(r.measureFrom) && sent.Before(r.measureTo)
}

// stages records the three stages of an answer (IngressReport.StageIn)
// from its "timestamp" and "latency_ms".
func (r *ingressRun) stages(payload []byte, sent, arrived time.Time) {
	ts, ok := jsonField(payload, `"timestamp":"`, '"')
	if !ok {
		return
	}
	encoded, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return
	}
	ms, ok := jsonField(payload, `"latency_ms":`, '}')
	if !ok {
		return
	}
	if i := bytes.IndexByte(ms, ','); i >= 0 {
		ms = ms[:i]
	}
	pipeMS, err := strconv.ParseFloat(string(ms), 64)
	if err != nil {
		return
	}
	pipe := time.Duration(pipeMS * float64(time.Millisecond))
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.measured(sent) {
		return
	}
	recordLatency(r.in, max(encoded.Add(-pipe).Sub(sent), 0))
	recordLatency(r.pipe, pipe)
	recordLatency(r.out, max(arrived.Sub(encoded), 0))
}

// jsonField is what follows key in payload up to the byte end.
func jsonField(payload []byte, key string, end byte) ([]byte, bool) {
	i := bytes.Index(payload, []byte(key))
	if i < 0 {
		return nil, false
	}
	rest := payload[i+len(key):]
	j := bytes.IndexByte(rest, end)
	if j < 0 {
		return nil, false
	}
	return rest[:j], true
}

// device is one simulated device: its own connection, its own request and
// result topics, its send times by sequence number.
type device struct {
	name  string
	run   *ingressRun
	mu    sync.Mutex
	sent  map[int64]time.Time // seq -> publish time, until answered
	acked map[int64]bool      // seqs acknowledged, until answered
	slots chan struct{}       // --rate max: outstanding requests
	// closed is the error that ended the device's connection before the
	// bench closed it (nil while it is open).
	closed func() error
}

// ack records that the request seq was acknowledged.
func (d *device) ack(seq int64, at time.Time) {
	d.mu.Lock()
	if _, unanswered := d.sent[seq]; unanswered {
		d.acked[seq] = true
	}
	d.mu.Unlock()
	d.run.acked.Add(1)
	d.run.sample(d.run.ackLat, at, false)
}

// fixedReading is the one demo reading the ingress and bulk loads send:
// their measure is transport, not the model.
var fixedReading = []float32{0.1, 0.2, 0.1, 0.3, 0.2, 0.1, 0.2, 0.1, 0.3, 0.2, 0.1, 0.2, 0.1, 0.3, 0.2, 0.1}

func (d *device) payload(seq int64) []byte {
	return demo.AppendRequest(nil, strconv.FormatInt(seq, 10), fixedReading)
}

// answered handles an answer: it finds the request id and records the
// latency.
func (d *device) answered(payload []byte) {
	i := bytes.Index(payload, []byte(`"request_id":"`))
	if i < 0 {
		return
	}
	rest := payload[i+len(`"request_id":"`):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return
	}
	seq, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	if err != nil {
		return
	}
	d.mu.Lock()
	at, ok := d.sent[seq]
	delete(d.sent, seq)
	delete(d.acked, seq)
	d.mu.Unlock()
	if !ok {
		return // a duplicate
	}
	d.run.answered.Add(1)
	d.run.sample(d.run.lat, at, true)
	d.run.stages(payload, at, time.Now())
	if d.slots != nil {
		<-d.slots
	}
}

// RunIngress starts a self-contained appliance with the ingress on and
// measures device -> prediction -> device over protocol.
func RunIngress(ctx context.Context, cfg Config, protocol string, devices int) (*IngressReport, error) {
	if protocol != IngressMQTT && protocol != IngressNATS {
		return nil, &UsageError{Err: fmt.Errorf("--ingress %q: want mqtt or nats", protocol)}
	}
	if len(cfg.Brokers) > 0 {
		return nil, &UsageError{Err: errors.New("--ingress runs a self-contained appliance; --brokers is not supported with it")}
	}
	if devices < 1 {
		return nil, &UsageError{Err: fmt.Errorf("--devices %d: must be at least 1", devices)}
	}
	cfg.Ingress = protocol
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var err error
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var sys *system
	if cfg.NATSOnly != "" {
		if cfg.NATSOnly != RelayMQTT && cfg.NATSOnly != RelayJetStream {
			return nil, &UsageError{Err: fmt.Errorf("--nats-only %q: want mqtt or js", cfg.NATSOnly)}
		}
		if protocol != IngressMQTT {
			return nil, &UsageError{Err: errors.New("--nats-only: only with --ingress mqtt")}
		}
		sys, err = startNATSOnly(&cfg)
	} else {
		sys, err = startSelfContained(ctx, &cfg, logger)
	}
	if err != nil {
		return nil, err
	}
	defer sys.stop()

	run := &ingressRun{lat: newHist(), ackLat: newHist(), in: newHist(), pipe: newHist(), out: newHist()}
	rep := &IngressReport{Protocol: protocol, Devices: devices, Rate: "max",
		DurationS: cfg.Duration.Seconds(), WarmupS: cfg.Warmup.Seconds(), AnswerQoS: 1, NATSOnly: cfg.NATSOnly,
		KafkaLoad: cfg.KafkaLoad}
	if cfg.AnswerQoS0 {
		rep.AnswerQoS = 0
	}
	if cfg.Rate > 0 {
		rep.Rate = strconv.FormatFloat(cfg.Rate, 'f', -1, 64)
	}
	window := cfg.Window
	if window == 0 {
		window = 4096
	}
	// Every device connects (and subscribes, which creates a JetStream
	// consumer per QoS 1 subscription: slow on a loaded machine) before
	// the schedule starts, so no device starts late.
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	devs := make([]*device, devices)
	sends := make([]func(int64) error, devices)
	for i := range devices {
		d := &device{name: "bench" + strconv.Itoa(i), run: run, sent: map[int64]time.Time{}, acked: map[int64]bool{}}
		if cfg.Rate <= 0 {
			d.slots = make(chan struct{}, max(window/devices, 1))
		}
		send, closeDev, err := connectDevice(ctx, sys, protocol, cfg.AnswerQoS0, d)
		if err != nil {
			return nil, fmt.Errorf("bench: device %s: %w", d.name, err)
		}
		closers = append(closers, closeDev)
		devs[i], sends[i] = d, send
	}
	begin := time.Now().Add(50 * time.Millisecond)
	run.mu.Lock()
	run.measureFrom = begin.Add(cfg.Warmup)
	run.measureTo = run.measureFrom.Add(cfg.Duration)
	run.mu.Unlock()
	if cfg.KafkaLoad > 0 {
		if sys.natsOnly {
			return nil, &UsageError{Err: errors.New("--kafka-load: not with --nats-only (there is no Kafka)")}
		}
		kl, err := startKafkaLoad(ctx, sys, cfg.KafkaLoad, begin)
		if err != nil {
			return nil, err
		}
		stopLoad := sync.OnceFunc(func() {
			kl.stop()
			rep.KafkaLoadProduced, rep.KafkaLoadFailed = kl.produced.Load(), kl.failed.Load()
		})
		defer stopLoad()
		closers = append(closers, stopLoad)
	}
	smp := &sampler{src: selfProc{}}
	sctx, stopSampler := context.WithCancel(ctx)
	samplerDone := make(chan struct{})
	go func() { defer close(samplerDone); smp.loop(sctx, run.measureFrom, run.measureTo) }()
	defer func() { stopSampler(); <-samplerDone }()
	var wg sync.WaitGroup
	for i, d := range devs {
		wg.Go(func() { d.loop(ctx, cfg.Rate/float64(devices), begin, run.measureTo, sends[i]) })
	}
	wg.Wait()
	// The devices stop at the window's end, as the sampler takes its
	// reading there: wait for that reading before reporting.
	for waited := 0; waited < 200 && ctx.Err() == nil; waited++ {
		smp.mu.Lock()
		done := smp.haveTo
		smp.mu.Unlock()
		if done {
			break
		}
		_ = sleepCtx(ctx, 10*time.Millisecond)
	}
	drainEnd := time.Now().Add(cfg.Drain)
	// Wait for the PUBACKs still on their way too, not only for the answers
	// to what was acknowledged so far.
	for run.answered.Load() < run.sent.Load() && time.Now().Before(drainEnd) && ctx.Err() == nil {
		_ = sleepCtx(ctx, 10*time.Millisecond)
	}
	// Before the devices are closed: which of them nats-server closed.
	closedDevs := map[string]bool{}
	for _, d := range devs {
		if d.closed == nil {
			continue
		}
		if err := d.closed(); err != nil {
			closedDevs[d.name] = true
			rep.DevicesClosed++
			if len(rep.ClosedErrors) < 5 {
				rep.ClosedErrors = append(rep.ClosedErrors, d.name+": "+err.Error())
			}
		}
	}
	for _, c := range closers {
		c()
	}
	closers = nil
	rep.Sent, rep.Acked, rep.Answered = run.sent.Load(), run.acked.Load(), run.answered.Load()
	rep.Lost = rep.Acked - rep.Answered
	rep.ThroughputRPS = float64(run.inWindow.Load()) / cfg.Duration.Seconds()
	smp.mu.Lock()
	if smp.haveFrom && smp.haveTo {
		rep.CPUSeconds = (smp.to.cpu - smp.from.cpu).Seconds()
		if n := run.inWindow.Load(); n > 0 {
			rep.CPUMicrosPerRequest = rep.CPUSeconds * 1e6 / float64(n)
		}
	}
	smp.mu.Unlock()
	rep.OtherCores = smp.otherCores(run.measureFrom, run.measureTo)
	run.mu.Lock()
	rep.Latency, rep.AckLatency = summarize(run.lat), summarize(run.ackLat)
	rep.StageIn, rep.StagePipeline, rep.StageOut = summarize(run.in), summarize(run.pipe), summarize(run.out)
	rep.Errors = append(rep.Errors, run.errs...)
	run.mu.Unlock()
	if rep.Lost > 0 {
		rep.Errors = append(rep.Errors, fmt.Sprintf("%d acknowledged requests not answered within --drain %s", rep.Lost, cfg.Drain))
		if !sys.natsOnly {
			want := map[unansweredKey]bool{}
			for _, d := range devs {
				d.mu.Lock()
				for seq := range d.acked {
					want[unansweredKey{device: d.name, seq: seq}] = closedDevs[d.name]
				}
				d.mu.Unlock()
			}
			u, err := classify(ctx, sys, want)
			if err != nil {
				u.Err = err.Error()
			}
			rep.Unanswered = u
		}
	}
	return rep, nil
}

// loop publishes on a fixed schedule (rate per second for this device) or,
// with rate 0, as fast as the device's window of outstanding requests allows.
func (d *device) loop(ctx context.Context, rate float64, begin, end time.Time, send func(seq int64) error) {
	if err := sleepUntil(ctx, begin); err != nil {
		return
	}
	var seq int64
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(time.Second) / rate)
	}
	next := begin
	for ctx.Err() == nil {
		now := time.Now()
		if !now.Before(end) {
			return
		}
		if d.slots != nil {
			select {
			case d.slots <- struct{}{}:
			case <-ctx.Done():
				return
			case <-time.After(time.Until(end)):
				return
			}
		} else if next.After(now) {
			_ = sleepCtx(ctx, next.Sub(now))
			continue
		}
		seq++
		d.mu.Lock()
		d.sent[seq] = time.Now()
		d.mu.Unlock()
		if err := send(seq); err != nil {
			d.run.fail(err)
			return
		}
		d.run.sent.Add(1)
		next = next.Add(interval)
	}
}

// connectDevice connects d over protocol and returns its send function.
func connectDevice(ctx context.Context, sys *system, protocol string, answerQoS0 bool, d *device) (func(int64) error, func(), error) {
	reqTopic := "infergate/requests/demo/" + d.name
	if protocol == IngressMQTT {
		var dev *mqttDevice
		var pmu sync.Mutex
		type inFlight struct {
			seq int64
			at  time.Time
		}
		acks := map[uint16]inFlight{}
		dev, err := dialMQTT(sys.mqttAddr, d.name, func(id uint16) {
			pmu.Lock()
			p, ok := acks[id]
			delete(acks, id)
			pmu.Unlock()
			if ok {
				d.ack(p.seq, p.at)
			}
		}, func(_ string, payload []byte) { d.answered(payload) })
		if err != nil {
			return nil, nil, err
		}
		d.closed = dev.closedBy
		var qos byte = 1
		if answerQoS0 {
			qos = 0
		}
		if err := dev.subscribe("infergate/results/+/"+d.name, qos); err != nil {
			dev.close()
			return nil, nil, err
		}
		send := func(seq int64) error {
			pmu.Lock()
			defer pmu.Unlock()
			id, err := dev.publish(reqTopic, d.payload(seq))
			if err == nil {
				acks[id] = inFlight{seq: seq, at: time.Now()}
			}
			return err
		}
		return send, dev.close, nil
	}

	nc, err := nats.Connect("nats://"+sys.natsAddr, nats.Name(d.name))
	if err != nil {
		return nil, nil, err
	}
	if _, err := nc.Subscribe("infergate.results.*."+d.name, func(m *nats.Msg) { d.answered(m.Data) }); err != nil {
		nc.Close()
		return nil, nil, err
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	futures := make(chan struct {
		f   jetstream.PubAckFuture
		seq int64
		at  time.Time
	}, 8192)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := range futures {
			select {
			case <-p.f.Ok():
				d.ack(p.seq, p.at)
			case err := <-p.f.Err():
				d.run.fail(err)
			case <-ctx.Done():
				return
			}
		}
	}()
	subj := "$MQTT.msgs.infergate.requests.demo." + d.name
	send := func(seq int64) error {
		at := time.Now()
		f, err := js.PublishAsync(subj, d.payload(seq))
		if err != nil {
			return err
		}
		futures <- struct {
			f   jetstream.PubAckFuture
			seq int64
			at  time.Time
		}{f, seq, at}
		return nil
	}
	closeDev := func() {
		close(futures)
		<-done
		nc.Close()
	}
	return send, closeDev, nil
}
