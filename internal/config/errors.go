package config

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// typeErr is one of yaml.v3's type errors: "line 3: cannot unmarshal
// !!str `abc` into time.Duration".
var typeErr = regexp.MustCompile("^line ([0-9]+): cannot unmarshal !!\\w+ `(.*)` into (.+)$")

// lineErr is any other error yaml.v3 reports with a line, such as
// ByteSize's own.
var lineErr = regexp.MustCompile(`^line ([0-9]+): (.*)$`)

// plainError rewrites yaml.v3's type errors so each names the field (by
// its dotted path) and the expected kind of value in plain words, not Go
// type names: `limits.connect_timeout: "abc" is not a duration such as
// 30s or 5m`. src is the YAML that failed to decode.
func plainError(src []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	var root yaml.Node
	if yaml.Unmarshal(src, &root) != nil {
		return err
	}
	errs := make([]error, 0, len(te.Errors))
	for _, msg := range te.Errors {
		if m := typeErr.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			errs = append(errs, fmt.Errorf("%s: %q is not %s", fieldAt(&root, line, m[2]), m[2], plainType(m[3])))
			continue
		}
		if m := lineErr.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			errs = append(errs, fmt.Errorf("%s: %s", fieldAt(&root, line, ""), m[2]))
			continue
		}
		errs = append(errs, errors.New(msg))
	}
	return errors.Join(errs...)
}

// plainType names a Go type the way configs/tern.yaml describes values.
func plainType(goType string) string {
	switch {
	case goType == "time.Duration":
		return "a duration such as 30s or 5m"
	case goType == "bool":
		return "true or false"
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "a whole number"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "config."):
		return "a section of keys"
	}
	return "a value of the right kind"
}

// fieldAt returns the dotted path of the value on line whose text is value
// (any value on that line when value is empty), or "line N".
func fieldAt(n *yaml.Node, line int, value string) string {
	if p, ok := findPath(n, "", line, value); ok {
		return p
	}
	return fmt.Sprintf("line %d", line)
}

func findPath(n *yaml.Node, path string, line int, value string) (string, bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if p, ok := findPath(c, path, line, value); ok {
				return p, true
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			if q, ok := match(v, p, line, value); ok {
				return q, true
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if q, ok := match(c, p, line, value); ok {
				return q, true
			}
		}
	}
	return "", false
}

// match finds the value in n (at path), preferring the deepest node: a
// section starts on the line of its first key.
func match(n *yaml.Node, path string, line int, value string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		if q, ok := findPath(n, path, line, value); ok {
			return q, true
		}
	}
	if n.Line == line && (value == "" || n.Kind != yaml.ScalarNode || n.Value == value) {
		return path, true
	}
	return "", false
}
