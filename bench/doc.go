// Package bench is `infergate bench`, the open-loop load generator that
// measures the appliance: requests go out on a fixed schedule (or as fast as
// a bounded window of outstanding requests allows), each stamped with the
// time it was due, and each is measured from that time to the arrival of
// its result or DLQ record. A baseline mode processes the same requests the
// way the design note this product comes from does (one Predict over gRPC
// and one synchronous commit per message), so the pipeline's gain is a ratio
// measured on the same machine. See docs/performance.md.
package bench
