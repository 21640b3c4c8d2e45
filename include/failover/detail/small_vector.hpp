// A vector whose first N elements live inline: a trace of a call that succeeds on its first few
// attempts never touches the heap.
#pragma once

#include <array>
#include <cstddef>
#include <iterator>
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

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  T& operator[](std::size_t i) noexcept { return i < N ? inline_[i] : heap_[i - N]; }
  const T& operator[](std::size_t i) const noexcept { return i < N ? inline_[i] : heap_[i - N]; }
  T& back() noexcept { return (*this)[size_ - 1]; }
  const T& back() const noexcept { return (*this)[size_ - 1]; }

  T& push_back(T value) {
    if (size_ < N) {
      inline_[size_] = std::move(value);
    } else {
      heap_.push_back(std::move(value));
    }
    ++size_;
    return back();
  }

  iterator begin() noexcept { return iterator(this, 0); }
  iterator end() noexcept { return iterator(this, size_); }
  const_iterator begin() const noexcept { return const_iterator(this, 0); }
  const_iterator end() const noexcept { return const_iterator(this, size_); }

 private:
  std::array<T, N> inline_{};
  std::vector<T> heap_;
  std::size_t size_ = 0;
};

}  // namespace failover::detail
