package domain

import (
	"math/bits"
	"slices"
)

// Quantile returns the num/den quantile of xs by linear interpolation
// between the closest ranks (the method numpy, R (type 7) and
// spreadsheets' PERCENTILE.INC use): with the values sorted as
// x[0] <= ... <= x[n-1] and h = (n-1)·num/den, it is
// x[⌊h⌋] + (h-⌊h⌋)·(x[⌊h⌋+1]-x[⌊h⌋]), rounded half up to an integer.
// So the median of 1, 2, 3, 4 minutes is 2.5 minutes. The arithmetic is
// exact (no floating point), so results match hand computation to the
// nanosecond.
//
// It reorders xs (a selection, not a full sort: linear time on average,
// which matters for a row of a million durations) and returns 0 for an
// empty slice. num/den must lie in [0, 1].
func Quantile(xs []int64, num, den uint64) int64 {
	n := len(xs)
	if n == 0 || den == 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(n-1), num)
	k64, rem := bits.Div64(hi, lo, den)
	k := int(k64)
	v := selectK(xs, k)
	if rem == 0 || k+1 >= n {
		return v
	}
	// After the selection everything right of k is >= xs[k]; the next
	// rank is the smallest of those.
	next := slices.Min(xs[k+1:])
	diff := uint64(next - v)
	h, l := bits.Mul64(diff, rem)
	l, carry := bits.Add64(l, den/2, 0)
	h += carry
	frac, _ := bits.Div64(h, l, den)
	return v + int64(frac)
}

// selectK reorders xs so that xs[k] holds the value of rank k, everything
// before it is <= and everything after it >= that value, and returns it.
// It is quickselect with a median-of-three pivot and a three-way
// partition, so many equal durations do not make it quadratic.
func selectK(xs []int64, k int) int64 {
	lo, hi := 0, len(xs)-1
	for hi-lo >= 16 {
		mid := lo + (hi-lo)/2
		p := median3(xs[lo], xs[mid], xs[hi])
		lt, i, gt := lo, lo, hi
		for i <= gt {
			switch {
			case xs[i] < p:
				xs[lt], xs[i] = xs[i], xs[lt]
				lt++
				i++
			case xs[i] > p:
				xs[i], xs[gt] = xs[gt], xs[i]
				gt--
			default:
				i++
			}
		}
		switch {
		case k < lt:
			hi = lt - 1
		case k > gt:
			lo = gt + 1
		default:
			return p
		}
	}
	slices.Sort(xs[lo : hi+1])
	return xs[k]
}

func median3(a, b, c int64) int64 {
	if a > b {
		a, b = b, a
	}
	if b > c {
		b = c
	}
	return max(a, b)
}
