package pipeline

import "time"

// Tuning is the part of Config a running pipeline takes without a restart:
// batching, retries and the model call's deadline. The rest of Config
// (topics, group, delivery, the number of workers, the circuit's probe
// interval) shapes the clients and goroutines Run makes.
type Tuning struct {
	MaxBatchSize    int
	MaxBatchWait    time.Duration
	RetryBackoff    time.Duration
	RetryBackoffMax time.Duration
	RetryAttempts   int
	MaxAttempts     int
	PredictTimeout  time.Duration
}

// Tuning returns c's tunable part.
func (c *Config) Tuning() Tuning {
	return Tuning{
		MaxBatchSize: c.MaxBatchSize, MaxBatchWait: c.MaxBatchWait,
		RetryBackoff: c.RetryBackoff, RetryBackoffMax: c.RetryBackoffMax, RetryAttempts: c.RetryAttempts,
		MaxAttempts: c.MaxAttempts, PredictTimeout: c.PredictTimeout,
	}
}

// SetTuning sets c's tunable part to t.
func (c *Config) SetTuning(t Tuning) {
	c.MaxBatchSize, c.MaxBatchWait = t.MaxBatchSize, t.MaxBatchWait
	c.RetryBackoff, c.RetryBackoffMax, c.RetryAttempts = t.RetryBackoff, t.RetryBackoffMax, t.RetryAttempts
	c.MaxAttempts, c.PredictTimeout = t.MaxAttempts, t.PredictTimeout
}

// Retune applies t to the running pipeline, after checking it as Validate
// checks a Config (on the pipeline's Config with t in place): batches opened
// from now on are cut at the new size and wait, retries and model calls
// begun from now on use the new backoff, attempts and deadline. Work under
// way finishes as it began. The queue bound sized from MaxBatchSize at New
// stays.
func (p *Pipeline) Retune(t Tuning) error {
	c := p.cfg
	c.SetTuning(t)
	if err := c.Validate(); err != nil {
		return err
	}
	p.tune.Store(&t)
	p.logger.Info("pipeline retuned", "max_batch", t.MaxBatchSize, "max_wait", t.MaxBatchWait,
		"retry_backoff", t.RetryBackoff, "retry_backoff_max", t.RetryBackoffMax, "retry_attempts", t.RetryAttempts,
		"max_attempts", t.MaxAttempts, "predict_timeout", t.PredictTimeout)
	return nil
}

// tuning is what the pipeline runs with now; read it once per decision, so
// one batch or one retry loop sees one consistent set.
func (p *Pipeline) tuning() *Tuning { return p.tune.Load() }

// Tuning is what the pipeline runs with now (its Config's, or Retune's).
func (p *Pipeline) Tuning() Tuning { return *p.tune.Load() }
