// A vector whose first N elements live inline: a trace of a call that succeeds on its first few
// attempts never touches the heap, and constructs only the records it uses. The vector for the
// elements past N is itself built only when the first of them is added, so a small_vector that
// never spills neither builds nor destroys one: its destructor reads only the size and the
// elements.
#pragma once

#include <cstddef>
#include <iterator>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

namespace failover::detail {

template <class T, std::size_t N>
class small_vector {
  // Moves build elements one by one with no way back: they must not throw.
  static_assert(std::is_nothrow_move_constructible_v<T>,
                "failover::detail::small_vector<T, N>: T must be nothrow move-constructible");

 public:
  template <class Owner, class Ref>
  class basic_iterator {
   public:
    using iterator_category = std::random_access_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = std::remove_reference_t<Ref>*;
    using reference = Ref;

    basic_iterator() = default;
    basic_iterator(Owner* o, std::size_t i) : owner_(o), index_(i) {}
    reference operator*() const { return (*owner_)[index_]; }
    pointer operator->() const { return &(*owner_)[index_]; }
    basic_iterator& operator++() {
      ++index_;
      return *this;
    }
    basic_iterator operator++(int) {
      auto copy = *this;
      ++index_;
      return copy;
    }
    basic_iterator& operator--() {
      --index_;
      return *this;
    }
    basic_iterator& operator+=(difference_type d) {
      index_ = static_cast<std::size_t>(static_cast<difference_type>(index_) + d);
      return *this;
    }
    basic_iterator operator+(difference_type d) const { return basic_iterator(*this) += d; }
    basic_iterator operator-(difference_type d) const { return basic_iterator(*this) += -d; }
    difference_type operator-(const basic_iterator& o) const {
      return static_cast<difference_type>(index_) - static_cast<difference_type>(o.index_);
    }
    reference operator[](difference_type d) const { return *(*this + d); }
    bool operator==(const basic_iterator& o) const { return index_ == o.index_; }
    bool operator!=(const basic_iterator& o) const { return index_ != o.index_; }
    bool operator<(const basic_iterator& o) const { return index_ < o.index_; }

   private:
    Owner* owner_ = nullptr;
    std::size_t index_ = 0;
  };
  using iterator = basic_iterator<small_vector, T&>;
  using const_iterator = basic_iterator<const small_vector, const T&>;

  small_vector() noexcept = default;
  small_vector(const small_vector& other) {
    // A constructor that throws runs no destructor: undo what was built so far here.
    std::size_t built = 0;
    try {
      for (; built < other.inline_size(); ++built) new (raw(built)) T(other[built]);
      if (other.size_ > N) new (heap_storage_) std::vector<T>(other.heap());
    } catch (...) {
      while (built > 0) slot(--built)->~T();
      throw;
    }
    size_ = other.size_;
  }
  small_vector(small_vector&& other) noexcept {
    for (std::size_t i = 0; i < other.inline_size(); ++i) new (raw(i)) T(std::move(other[i]));
    if (other.size_ > N) new (heap_storage_) std::vector<T>(std::move(other.heap()));
    size_ = other.size_;
    other.clear();
  }
  small_vector& operator=(const small_vector& other) {
    if (this != &other) {
      small_vector copy(other);
      *this = std::move(copy);
    }
    return *this;
  }
  small_vector& operator=(small_vector&& other) noexcept {
    if (this != &other) {
      clear();
      for (std::size_t i = 0; i < other.inline_size(); ++i) new (raw(i)) T(std::move(other[i]));
      if (other.size_ > N) new (heap_storage_) std::vector<T>(std::move(other.heap()));
      size_ = other.size_;
      other.clear();
    }
    return *this;
  }
  ~small_vector() { clear(); }

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  T& operator[](std::size_t i) noexcept { return i < N ? *slot(i) : heap()[i - N]; }
  const T& operator[](std::size_t i) const noexcept { return i < N ? *slot(i) : heap()[i - N]; }
  T& back() noexcept { return (*this)[size_ - 1]; }
  const T& back() const noexcept { return (*this)[size_ - 1]; }

  // Constructs the element in place: no temporary to build, move and destroy.
  template <class... A>
  T& emplace_back(A&&... args) {
    T* added;
    if (size_ < N) {
      if constexpr (sizeof...(A) == 0) {
        added = new (raw(size_)) T;  // default-initialised: member initialisers, no zero-fill
      } else {
        added = new (raw(size_)) T(std::forward<A>(args)...);
      }
    } else if (size_ == N) {  // the first element past N: build the vector for it
      new (heap_storage_) std::vector<T>();
      try {
        added = &heap().emplace_back(std::forward<A>(args)...);
      } catch (...) {
        heap().~vector();
        throw;
      }
    } else {
      added = &heap().emplace_back(std::forward<A>(args)...);
    }
    ++size_;
    return *added;
  }

  T& push_back(T value) { return emplace_back(std::move(value)); }

  void clear() noexcept {
    destroy_inline();
    if (size_ > N) heap().~vector();
    size_ = 0;
  }

  iterator begin() noexcept { return iterator(this, 0); }
  iterator end() noexcept { return iterator(this, size_); }
  const_iterator begin() const noexcept { return const_iterator(this, 0); }
  const_iterator end() const noexcept { return const_iterator(this, size_); }

 private:
  std::size_t inline_size() const noexcept { return size_ < N ? size_ : N; }
  void* raw(std::size_t i) noexcept { return storage_ + i * sizeof(T); }
  T* slot(std::size_t i) noexcept { return std::launder(static_cast<T*>(raw(i))); }
  const T* slot(std::size_t i) const noexcept {
    return std::launder(reinterpret_cast<const T*>(storage_ + i * sizeof(T)));
  }
  void destroy_inline() noexcept {
    if (size_ == 1) {  // the common case (a call that succeeded at once), without a loop
      slot(0)->~T();
      return;
    }
    for (std::size_t i = inline_size(); i > 0; --i) slot(i - 1)->~T();
  }

  // Elements past the first N, in a vector built only when the first of them is added (so that a
  // small_vector that never spills neither builds nor destroys one, nor reads its pointers).
  std::vector<T>& heap() noexcept {
    return *std::launder(reinterpret_cast<std::vector<T>*>(heap_storage_));
  }
  const std::vector<T>& heap() const noexcept {
    return *std::launder(reinterpret_cast<const std::vector<T>*>(heap_storage_));
  }

  alignas(T) unsigned char storage_[N * sizeof(T)];
  alignas(std::vector<T>) unsigned char heap_storage_[sizeof(std::vector<T>)];
  std::size_t size_ = 0;
};

}  // namespace failover::detail
