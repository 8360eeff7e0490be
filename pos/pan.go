package pos

// LooksLikePAN reports whether s contains something that looks like a
// payment card number: a run of 13 to 19 digits (single spaces or dashes
// between digits allowed) that starts with 2 to 6, as the card networks'
// numbers do, and passes the Luhn check. Such input is refused before
// anything is stored or logged.
func LooksLikePAN(s string) bool {
	var digits []byte
	pendingSep := false
	check := func() bool {
		ok := len(digits) >= 13 && len(digits) <= 19 && digits[0] >= '2' && digits[0] <= '6' && luhn(digits)
		digits = digits[:0]
		pendingSep = false
		return ok
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits = append(digits, c)
			pendingSep = false
		case (c == ' ' || c == '-') && len(digits) > 0 && !pendingSep:
			pendingSep = true
		default:
			if check() {
				return true
			}
		}
	}
	return check()
}

func luhn(d []byte) bool {
	sum := 0
	double := false
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i] - '0')
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}
