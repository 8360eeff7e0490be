package bench

import "slices"

// medianFloat is the median of v (0 for none); v is left as it is.
func medianFloat(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// medianBy is the median of f over rs, rounded like every figure.
func medianBy[T any](rs []T, f func(T) float64) float64 {
	vs := make([]float64, len(rs))
	for i, r := range rs {
		vs[i] = f(r)
	}
	return round(medianFloat(vs))
}
