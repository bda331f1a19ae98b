//! Intrusive doubly linked lists over entry indices, with links kept in an
//! array beside the entries: list upkeep happens only when a flow is created,
//! removed or changes eviction class, so its cache lines stay out of the
//! lookup path.

/// No entry: the end of a list.
pub const NIL: u32 = u32::MAX;

/// The cold half of an entry: its place in a list.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    pub prev: u32,
    pub next: u32,
}

impl Link {
    pub const UNLINKED: Link = Link {
        prev: NIL,
        next: NIL,
    };
}

/// Head and tail of one list; the links live in a shared `[Link]`.
#[derive(Clone, Copy, Debug)]
pub struct List {
    pub head: u32,
    pub tail: u32,
    pub len: u32,
}

impl List {
    pub const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        len: 0,
    };

    #[inline]
    pub fn push_back(&mut self, links: &mut [Link], i: u32) {
        links[i as usize] = Link {
            prev: self.tail,
            next: NIL,
        };
        if self.tail == NIL {
            self.head = i;
        } else {
            links[self.tail as usize].next = i;
        }
        self.tail = i;
        self.len += 1;
    }

    /// Unlink `i`, which the caller knows to be on this list.
    #[inline]
    pub fn unlink(&mut self, links: &mut [Link], i: u32) {
        let Link { prev, next } = links[i as usize];
        if prev == NIL {
            self.head = next;
        } else {
            links[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            links[next as usize].prev = prev;
        }
        links[i as usize] = Link::UNLINKED;
        self.len -= 1;
    }

    #[inline]
    pub fn pop_front(&mut self, links: &mut [Link]) -> Option<u32> {
        let i = self.head;
        if i == NIL {
            return None;
        }
        self.unlink(links, i);
        Some(i)
    }

    /// Move `i` (on this list) to the back: it was just used.
    #[inline]
    pub fn touch(&mut self, links: &mut [Link], i: u32) {
        if self.tail != i {
            self.unlink(links, i);
            self.push_back(links, i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(l: &List, links: &[Link]) -> Vec<u32> {
        let mut out = Vec::new();
        let mut i = l.head;
        while i != NIL {
            out.push(i);
            i = links[i as usize].next;
        }
        // The backward chain must mirror the forward one.
        let mut back = Vec::new();
        let mut i = l.tail;
        while i != NIL {
            back.push(i);
            i = links[i as usize].prev;
        }
        back.reverse();
        assert_eq!(out, back);
        assert_eq!(out.len(), l.len as usize);
        out
    }

    #[test]
    fn push_unlink_touch_pop() {
        let mut links = [Link::UNLINKED; 6];
        let mut l = List::EMPTY;
        for i in [3, 1, 4, 0, 5] {
            l.push_back(&mut links, i);
        }
        assert_eq!(collect(&l, &links), [3, 1, 4, 0, 5]);
        l.unlink(&mut links, 4);
        assert_eq!(collect(&l, &links), [3, 1, 0, 5]);
        l.touch(&mut links, 3);
        assert_eq!(collect(&l, &links), [1, 0, 5, 3]);
        l.touch(&mut links, 3);
        assert_eq!(collect(&l, &links), [1, 0, 5, 3]);
        l.unlink(&mut links, 3);
        assert_eq!(collect(&l, &links), [1, 0, 5]);
        assert_eq!(l.pop_front(&mut links), Some(1));
        assert_eq!(l.pop_front(&mut links), Some(0));
        assert_eq!(l.pop_front(&mut links), Some(5));
        assert_eq!(l.pop_front(&mut links), None);
        assert_eq!(collect(&l, &links), Vec::<u32>::new());
    }
}
