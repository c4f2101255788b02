// libFuzzer target: the safetensors reader on arbitrary bytes. Every input
// must be accepted or refused with a Status; a valid parse must give
// tensors whose bytes lie inside the input and do not overlap, and the
// encoder's layer count check (its tensor-name parsing) must run on it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>

#include "model/config.h"
#include "model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  const std::span<const std::byte> bytes(
      reinterpret_cast<const std::byte*>(data), size);
  std::unique_ptr<salience::model::SafetensorsFile> file;
  const salience::Status status =
      salience::model::SafetensorsFile::Parse(bytes, "fuzz", &file);
  if (!status.ok()) return 0;
  std::size_t covered = 0;
  for (const auto& [name, tensor] : file->tensors()) {
    const auto* begin = tensor.bytes.data();
    if (begin < bytes.data() ||
        begin + tensor.bytes.size() > bytes.data() + size)
      std::abort();
    covered += tensor.bytes.size();
    volatile std::byte sink{};
    for (std::byte b : tensor.bytes) sink = b;  // ASan checks every read
    (void)sink;
  }
  if (covered > size) std::abort();
  salience::model::BertConfig config;
  config.num_layers = 6;
  (void)salience::model::CheckLayerCount(config, *file);
  return 0;
}
