package statistics

import "time"

// withDuplicateWindow sets the statistics stream's de-duplication window.
func withDuplicateWindow(d time.Duration) Option {
	return func(o *options) { o.duplicateWindow = d }
}

// withIdleFlush sets how long the projector waits to fill a batch.
func withIdleFlush(d time.Duration) Option {
	return func(o *options) { o.idleFlush = d }
}

// withPublishBatch bounds an atomic batch of record versions.
func withPublishBatch(n int) Option {
	return func(o *options) { o.publishBatch = n }
}
