package groupcommit

// QueuedForTest reports how many requests wait for a batch, so tests can
// line requests up behind a write in flight without sleeping.
func (q *Queue[Req, Res]) QueuedForTest() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.queue)
}
