//! The part of ECMA-262 regular expressions that the Hetzner OpenAPI
//! description's `pattern`s use: `^ $ ( ) |`, classes with ranges and
//! escapes, `. * + ? {m} {m,n}`. A backtracking matcher: small, exact for
//! these, and it refuses (panics on) anything else rather than guessing.

#[derive(Debug, Clone)]
enum Node {
    Char(char),
    Any,
    Class(Vec<(char, char)>, bool),
    Group(Vec<Vec<Node>>),
    Repeat(Box<Node>, usize, usize),
    Start,
    End,
}

struct Parser<'a> {
    chars: Vec<char>,
    at: usize,
    source: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn next(&mut self) -> char {
        let c = self
            .peek()
            .unwrap_or_else(|| panic!("pattern `{}` ends early", self.source));
        self.at += 1;
        c
    }

    fn alternatives(&mut self) -> Vec<Vec<Node>> {
        let mut alts = vec![Vec::new()];
        while let Some(c) = self.peek() {
            match c {
                ')' => break,
                '|' => {
                    self.at += 1;
                    alts.push(Vec::new());
                }
                _ => {
                    let atom = self.atom();
                    let node = self.quantified(atom);
                    alts.last_mut().expect("an alternative").push(node);
                }
            }
        }
        alts
    }

    fn atom(&mut self) -> Node {
        match self.next() {
            '^' => Node::Start,
            '$' => Node::End,
            '.' => Node::Any,
            '(' => {
                let alts = self.alternatives();
                assert_eq!(
                    self.next(),
                    ')',
                    "pattern `{}`: unclosed group",
                    self.source
                );
                Node::Group(alts)
            }
            '[' => self.class(),
            '\\' => Node::Char(self.next()),
            c => Node::Char(c),
        }
    }

    fn class(&mut self) -> Node {
        let negated = self.peek() == Some('^');
        if negated {
            self.at += 1;
        }
        let mut ranges = Vec::new();
        loop {
            let c = match self.next() {
                ']' => break,
                '\\' => self.next(),
                c => c,
            };
            if self.peek() == Some('-') && self.chars.get(self.at + 1).is_some_and(|n| *n != ']') {
                self.at += 1;
                let hi = match self.next() {
                    '\\' => self.next(),
                    h => h,
                };
                ranges.push((c, hi));
            } else {
                ranges.push((c, c));
            }
        }
        Node::Class(ranges, negated)
    }

    fn number(&mut self) -> usize {
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.at += 1;
        }
        let digits: String = self.chars[start..self.at].iter().collect();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("pattern `{}`: bad repeat", self.source))
    }

    fn quantified(&mut self, atom: Node) -> Node {
        let (min, max) = match self.peek() {
            Some('*') => (0, usize::MAX),
            Some('+') => (1, usize::MAX),
            Some('?') => (0, 1),
            Some('{') => {
                self.at += 1;
                let min = self.number();
                let max = match self.next() {
                    '}' => return Node::Repeat(Box::new(atom), min, min),
                    ',' => self.number(),
                    c => panic!("pattern `{}`: `{c}` in a repeat", self.source),
                };
                assert_eq!(
                    self.next(),
                    '}',
                    "pattern `{}`: unclosed repeat",
                    self.source
                );
                return Node::Repeat(Box::new(atom), min, max);
            }
            _ => return atom,
        };
        self.at += 1;
        Node::Repeat(Box::new(atom), min, max)
    }
}

fn matches_at(nodes: &[Node], s: &[char], pos: usize, k: &dyn Fn(usize) -> bool) -> bool {
    let Some((first, rest)) = nodes.split_first() else {
        return k(pos);
    };
    let then = |p: usize| matches_at(rest, s, p, k);
    match first {
        Node::Start => pos == 0 && then(pos),
        Node::End => pos == s.len() && then(pos),
        Node::Char(c) => s.get(pos) == Some(c) && then(pos + 1),
        Node::Any => pos < s.len() && then(pos + 1),
        Node::Class(ranges, negated) => {
            s.get(pos)
                .is_some_and(|c| ranges.iter().any(|(lo, hi)| (lo..=hi).contains(&c)) != *negated)
                && then(pos + 1)
        }
        Node::Group(alts) => alts.iter().any(|alt| matches_at(alt, s, pos, &then)),
        Node::Repeat(node, min, max) => repeat(node, *min, *max, 0, s, pos, &then),
    }
}

fn repeat(
    node: &Node,
    min: usize,
    max: usize,
    count: usize,
    s: &[char],
    pos: usize,
    k: &dyn Fn(usize) -> bool,
) -> bool {
    let more = count < max
        && matches_at(std::slice::from_ref(node), s, pos, &|p| {
            p != pos && repeat(node, min, max, count + 1, s, p, k)
        });
    more || (count >= min && k(pos))
}

/// Whether `pattern` matches somewhere in `text` (JSON Schema semantics:
/// unanchored unless the pattern anchors itself).
pub fn is_match(pattern: &str, text: &str) -> bool {
    let mut p = Parser {
        chars: pattern.chars().collect(),
        at: 0,
        source: pattern,
    };
    let alts = p.alternatives();
    assert!(p.peek().is_none(), "pattern `{pattern}`: unbalanced `)`");
    let node = [Node::Group(alts)];
    let s: Vec<char> = text.chars().collect();
    (0..=s.len()).any(|start| matches_at(&node, &s, start, &|_| true))
}
