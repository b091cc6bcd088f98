package app

import "sync"

// Broker fans the read model's changes out to the live queue views
// (WatchQueue) of this process. Each routing instance has its own read
// model and its own broker, so a watcher sees changes as soon as its
// instance has projected them.
type Broker struct {
	mu   sync.Mutex
	subs map[int]*subscription
	next int
}

type subscription struct {
	queue string
	ch    chan Change
}

// NewBroker returns an empty broker.
func NewBroker() *Broker { return &Broker{subs: map[int]*subscription{}} }

// Publish delivers a change to the watchers of the queue it happened in
// and of the queue it left. A watcher that does not keep up loses the
// change rather than holding up the projector; its stream then ends so
// the UI reloads (see Subscribe).
func (b *Broker) Publish(c Change) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, s := range b.subs {
		if s.queue != c.Queue && s.queue != c.PreviousQueue {
			continue
		}
		select {
		case s.ch <- c:
		default:
			close(s.ch)
			delete(b.subs, id)
		}
	}
}

// Subscribe returns the changes of one queue and a function to stop. The
// channel is closed when the watcher fell behind.
func (b *Broker) Subscribe(queue string) (<-chan Change, func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := b.next
	b.next++
	s := &subscription{queue: queue, ch: make(chan Change, 256)}
	b.subs[id] = s
	return s.ch, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if _, ok := b.subs[id]; ok {
			close(s.ch)
			delete(b.subs, id)
		}
	}
}
