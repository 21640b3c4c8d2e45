// A vector whose first N elements live inline: a trace of a call that succeeds on its first few
// attempts never touches the heap, and constructs only the records it uses.
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
  small_vector(const small_vector& other) : heap_(other.heap_) {
    // A constructor that throws runs no destructor: undo the elements built so far here.
    std::size_t built = 0;
    try {
      for (; built < other.inline_size(); ++built) new (raw(built)) T(other[built]);
    } catch (...) {
      while (built > 0) slot(--built)->~T();
      throw;
    }
    size_ = other.size_;
  }
  small_vector(small_vector&& other) noexcept(std::is_nothrow_move_constructible_v<T>)
      : heap_(std::move(other.heap_)) {
    for (std::size_t i = 0; i < other.inline_size(); ++i) new (raw(i)) T(std::move(other[i]));
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
  small_vector& operator=(small_vector&& other) noexcept(std::is_nothrow_move_constructible_v<T>) {
    if (this != &other) {
      clear();
      heap_ = std::move(other.heap_);
      for (std::size_t i = 0; i < other.inline_size(); ++i) new (raw(i)) T(std::move(other[i]));
      size_ = other.size_;
      other.clear();
    }
    return *this;
  }
  ~small_vector() { destroy_inline(); }

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  T& operator[](std::size_t i) noexcept { return i < N ? *slot(i) : heap_[i - N]; }
  const T& operator[](std::size_t i) const noexcept { return i < N ? *slot(i) : heap_[i - N]; }
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
    } else {
      added = &heap_.emplace_back(std::forward<A>(args)...);
    }
    ++size_;
    return *added;
  }

  T& push_back(T value) { return emplace_back(std::move(value)); }

  void clear() noexcept {
    destroy_inline();
    heap_.clear();
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
    for (std::size_t i = inline_size(); i > 0; --i) slot(i - 1)->~T();
  }

  alignas(T) unsigned char storage_[N * sizeof(T)];
  std::vector<T> heap_;
  std::size_t size_ = 0;
};

}  // namespace failover::detail
