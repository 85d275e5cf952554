"""An RLock-protected recursive structure: a binary search tree whose insert
and walk re-acquire the tree's lock at every level. Threads insert keys with
random sleeps in between; the tree's shape depends on the insertion order,
which depends on scheduling."""
import random
import threading
import time


class Tree:
    def __init__(self):
        self.lock = threading.RLock()
        self.root = None
        self.log = []

    def insert(self, key, who):
        with self.lock:
            self.log.append((key, who))
            self.root = self._insert(self.root, key, 0)

    def _insert(self, node, key, depth):
        with self.lock:                      # re-entered at every level
            if node is None:
                return [key, None, None, depth]
            if key < node[0]:
                node[1] = self._insert(node[1], key, depth + 1)
            else:
                node[2] = self._insert(node[2], key, depth + 1)
            return node

    def shape(self, node=None, top=True):
        with self.lock:
            node = self.root if top else node
            if node is None:
                return "."
            return f"({self.shape(node[1], False)} {node[0]} {self.shape(node[2], False)})"

    def height(self, node=None, top=True):
        self.lock.acquire()
        try:
            node = self.root if top else node
            if node is None:
                return 0
            return 1 + max(self.height(node[1], False), self.height(node[2], False))
        finally:
            self.lock.release()


tree = Tree()


def inserter(name, keys):
    for key in keys:
        time.sleep(random.random() / 200)
        tree.insert(key, name)
        if key % 4 == 0:
            with tree.lock:
                print(f"{name}: inserted {key}, height {tree.height()}")


keys = list(range(40))
threads = [threading.Thread(target=inserter, args=(f"t{i}", keys[i::4])) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("order:", " ".join(f"{k}{w}" for k, w in tree.log))
print("shape:", tree.shape())
print("height:", tree.height())
