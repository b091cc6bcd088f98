package readmodel

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Unrouted lists the cases that are registered but in no queue yet, so a
// router that starts (or restarts) finds every case that still needs it.
// It reads the unrouted index, which every batch keeps in its own
// transaction, so it costs what waits for the router, however many cases
// the file holds.
func (s *Store) Unrouted() ([]string, error) {
	var ids []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketUnrouted)).ForEach(func(k, _ []byte) error {
			ids = append(ids, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("readmodel: list unrouted cases: %w", err)
	}
	return ids, nil
}
