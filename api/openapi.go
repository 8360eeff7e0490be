package api

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// httpMethods are the operation keys of an OpenAPI path item.
var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// DocumentedOperations lists the operations of an OpenAPI document as route
// patterns ("GET /v1/log/entries"), sorted. It reads the block under the
// top-level "paths:" key of a document indented with two spaces, as
// openapi.yaml is; it is not a general YAML parser.
func DocumentedOperations(doc []byte) ([]string, error) {
	var ops []string
	sc := bufio.NewScanner(bytes.NewReader(doc))
	inPaths := false
	path := ""
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimRight(sc.Text(), " \t\r")
		if text == "" || strings.HasPrefix(strings.TrimSpace(text), "#") {
			continue
		}
		indent := len(text) - len(strings.TrimLeft(text, " "))
		switch {
		case indent == 0:
			inPaths = text == "paths:"
			path = ""
		case !inPaths:
		case indent == 2:
			key, ok := strings.CutSuffix(text[2:], ":")
			key = strings.Trim(key, `"'`)
			if !ok || !strings.HasPrefix(key, "/") {
				return nil, fmt.Errorf("openapi line %d: want a path key under paths:, got %q", line, text)
			}
			path = key
		case indent == 4:
			key, ok := strings.CutSuffix(text[4:], ":")
			if ok && slices.Contains(httpMethods, key) {
				ops = append(ops, strings.ToUpper(key)+" "+path)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	slices.Sort(ops)
	return ops, nil
}

var restWildcard = regexp.MustCompile(`\{([^}]*?)(\.\.\.)?\}`)

// UndocumentedRoutes compares the routes registered on s with the
// operations of the OpenAPI document: missing lists routes the document
// lacks, extra lists documented operations no route serves. Route
// wildcards "{name...}" match document parameters "{name}"; "{$}" is
// dropped.
func (s *Server) UndocumentedRoutes(doc []byte) (missing, extra []string, err error) {
	documented, err := DocumentedOperations(doc)
	if err != nil {
		return nil, nil, err
	}
	served := map[string]bool{}
	for _, p := range s.Routes() {
		method, path, _ := strings.Cut(p, " ")
		path = strings.TrimSuffix(path, "{$}")
		path = restWildcard.ReplaceAllString(path, "{$1}")
		served[method+" "+path] = true
	}
	docSet := map[string]bool{}
	for _, op := range documented {
		docSet[op] = true
		if !served[op] {
			extra = append(extra, op)
		}
	}
	for _, op := range sortedKeys(served) {
		if !docSet[op] {
			missing = append(missing, op)
		}
	}
	return missing, extra, nil
}
