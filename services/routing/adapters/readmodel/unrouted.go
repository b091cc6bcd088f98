package readmodel

import (
	"fmt"

	bolt "go.etcd.io/bbolt"

	casev1 "github.com/kontakt-se/kontakt/pkg/api/kontakt/case/v1"
)

// Unrouted lists the cases that are registered but in no queue yet, so a
// router that starts (or restarts) finds every case that still needs it.
func (s *Store) Unrouted() ([]string, error) {
	var ids []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketCases)).ForEach(func(k, v []byte) error {
			r, err := decodeRecord(string(k), v)
			if err != nil {
				return fmt.Errorf("case %s: %w", k, err)
			}
			if r.c.Status == casev1.CaseStatus_CASE_STATUS_REGISTERED {
				ids = append(ids, string(k))
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("readmodel: list unrouted cases: %w", err)
	}
	return ids, nil
}
