// The safetensors reader: a valid file in every corner the format allows,
// and each rule broken once, with the error naming the rule.
#include "model/safetensors.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "tests/model/test_util.h"

namespace salience::model {
namespace {

// header length (LE) + header + `data_bytes` bytes of data.
std::vector<std::byte> MakeFile(const std::string& header,
                                std::size_t data_bytes,
                                std::uint64_t declared_length = UINT64_MAX) {
  const std::uint64_t length =
      declared_length == UINT64_MAX ? header.size() : declared_length;
  std::vector<std::byte> bytes(8 + header.size() + data_bytes);
  for (int i = 0; i < 8; ++i)
    bytes[i] = static_cast<std::byte>((length >> (8 * i)) & 0xFF);
  std::memcpy(bytes.data() + 8, header.data(), header.size());
  for (std::size_t i = 0; i < data_bytes; ++i)
    bytes[8 + header.size() + i] = static_cast<std::byte>(i & 0xFF);
  return bytes;
}

Status ParseBytes(const std::vector<std::byte>& bytes,
                  std::unique_ptr<SafetensorsFile>* file = nullptr) {
  std::unique_ptr<SafetensorsFile> local;
  return SafetensorsFile::Parse(bytes, "test.safetensors",
                                file ? file : &local);
}

// The error mentions the file's label and `fragment`.
void ExpectError(const std::vector<std::byte>& bytes,
                 const std::string& fragment) {
  const Status status = ParseBytes(bytes);
  ASSERT_FALSE(status.ok()) << "expected an error about: " << fragment;
  EXPECT_NE(status.message().find("test.safetensors"), std::string::npos)
      << status.message();
  EXPECT_NE(status.message().find(fragment), std::string::npos)
      << status.message();
}

const char* kTwoTensors =
    R"({"__metadata__":{"format":"pt"},)"
    R"("b":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]},)"
    R"("a":{"dtype":"I16","shape":[4],"data_offsets":[0,8]}})";

TEST(Safetensors, ParsesTensorsMetadataAndPointsIntoTheBuffer) {
  const auto bytes = MakeFile(kTwoTensors, 24);
  std::unique_ptr<SafetensorsFile> file;
  ASSERT_TRUE(ParseBytes(bytes, &file).ok());
  ASSERT_EQ(file->tensors().size(), 2u);
  EXPECT_EQ(file->metadata().at("format"), "pt");
  const StTensor* b = file->Find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype, StDType::kF32);
  EXPECT_EQ(b->shape, (std::vector<std::int64_t>{2, 2}));
  EXPECT_EQ(b->num_elements(), 4);
  const std::size_t header_size = std::strlen(kTwoTensors);
  EXPECT_EQ(b->bytes.data(), bytes.data() + 8 + header_size + 8);  // no copy
  EXPECT_EQ(b->bytes.size(), 16u);
  EXPECT_EQ(file->Find("missing"), nullptr);
}

TEST(Safetensors, AcceptsScalarsEmptyTensorsPaddedHeaderAndNoTensors) {
  EXPECT_TRUE(
      ParseBytes(
          MakeFile(R"({"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]}})",
                   8))
          .ok());
  EXPECT_TRUE(
      ParseBytes(
          MakeFile(
              R"({"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]}})", 0))
          .ok());
  EXPECT_TRUE(
      ParseBytes(
          MakeFile(
              R"({"x":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}}    )",
              2))
          .ok());
  EXPECT_TRUE(ParseBytes(MakeFile("{}", 0)).ok());
}

TEST(Safetensors, RefusesTruncatedFiles) {
  ExpectError(std::vector<std::byte>(5), "fewer than the 8-byte header length");
  auto bytes = MakeFile(kTwoTensors, 24);
  bytes.resize(8 + 10);
  ExpectError(bytes, "truncated: header length");
  bytes = MakeFile(kTwoTensors, 20);  // data shorter than the offsets say
  ExpectError(bytes, "lies past the data buffer");
}

TEST(Safetensors, RefusesHugeHeaderLength) {
  ExpectError(MakeFile("{}", 0, kMaxHeaderBytes + 1), "exceeds the limit");
  ExpectError(MakeFile("{}", 0, UINT64_MAX - 1), "exceeds the limit");
}

TEST(Safetensors, RefusesMalformedJson) {
  ExpectError(MakeFile(R"({"a":)", 0), "not valid JSON");
  ExpectError(MakeFile(R"([1,2])", 0), "not a JSON object");
  ExpectError(MakeFile(R"({"a":3})", 0), "entry is neither an object");
  ExpectError(MakeFile(R"({"a":["F32",[1]]})", 0), "entry is neither");
  ExpectError(MakeFile("\xEF\xBB\xBF{}", 0), "byte-order mark");
}

TEST(Safetensors, RefusesUnknownDtypeAndBadFields) {
  ExpectError(
      MakeFile(R"({"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}})",
               16),
      "unknown dtype 'F128'");
  ExpectError(MakeFile(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", 4),
              "\"dtype\"");
  ExpectError(
      MakeFile(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
      "non-negative integers");
  ExpectError(
      MakeFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4),
      "data_offsets");
  ExpectError(
      MakeFile(
          R"({"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
          4),
      "tensor 'a' has \"dtype\" twice");
  ExpectError(MakeFile(R"({"__metadata__":{"k":1}})", 0), "not a string");
  ExpectError(MakeFile(R"({"__metadata__":[]})", 0), "not an object");
  ExpectError(MakeFile(R"({"__metadata__":{},"__metadata__":{}})", 0),
              "a second \"__metadata__\"");
}

TEST(Safetensors, RefusesShapeOverflowAndSizeMismatch) {
  ExpectError(
      MakeFile(
          R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})",
          4),
      "overflows");
  ExpectError(
      MakeFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4),
      "dtype and shape need 8");
  ExpectError(
      MakeFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", 4),
      "< begin");
}

TEST(Safetensors, RefusesOverlapGapsAndTrailingBytes) {
  ExpectError(
      MakeFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
               12),
      "overlaps");
  ExpectError(
      MakeFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
      "gap");
  ExpectError(
      MakeFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8),
      "tensors cover 4");
}

// A name given twice keeps its last entry, as the reference's serde does:
// the earlier entry's bytes then count for nothing.
TEST(Safetensors, ANameGivenTwiceKeepsItsLastEntry) {
  ExpectError(
      MakeFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
               R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
               8),
      "gap in the data buffer before tensor 'a'");
  std::unique_ptr<SafetensorsFile> file;
  ASSERT_TRUE(
      ParseBytes(
          MakeFile(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
                   R"("a":{"dtype":"I16","shape":[2],"data_offsets":[0,4]}})",
                   4),
          &file)
          .ok());
  ASSERT_EQ(file->tensors().size(), 1u);
  EXPECT_EQ(file->Find("a")->dtype, StDType::kI16);
}

// What the reference library (huggingface/safetensors 0.8) loads, beyond
// the files it writes: a header of any length (the data then unaligned),
// JSON whitespace before the object, unknown fields, an entry as an array,
// a null "__metadata__", and every dtype it knows, the sub-byte ones when
// their tensors fill whole bytes.
TEST(Safetensors, AcceptsEveryFileTheReferenceLoads) {
  const std::string tensor =
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  for (int pad = 0; pad < 8; ++pad) {
    std::unique_ptr<SafetensorsFile> file;
    const auto bytes = MakeFile("{" + tensor + "}" + std::string(pad, ' '), 8);
    ASSERT_TRUE(ParseBytes(bytes, &file).ok()) << "padding " << pad;
    EXPECT_EQ(file->Find("a")->bytes.data(),
              bytes.data() + 8 + tensor.size() + 2 + pad);
  }
  for (
      const std::string& header : std::vector<std::string>{
          "\n\t {" + tensor + "}",
          R"({"a":{"x":[{"y":1}],"dtype":"F32","shape":[2],"data_offsets":[0,8],"z":null}})",
          R"({"a":["F32",[2],[0,8]]})",
          R"({"__metadata__":null,)" + tensor + "}",
          R"({"__metadata__":{"dtype":"F32"},)" + tensor + "}",
      }) {
    std::unique_ptr<SafetensorsFile> file;
    const Status status = ParseBytes(MakeFile(header, 8), &file);
    ASSERT_TRUE(status.ok()) << header << ": " << status.message();
    EXPECT_EQ(file->Find("a")->shape, (std::vector<std::int64_t>{2}));
  }
  const struct {
    const char* dtype;
    StDType expected;
    int elements, bytes;
  } kinds[] = {{"F4", StDType::kF4, 6, 3},
               {"F6_E2M3", StDType::kF6E2M3, 4, 3},
               {"F6_E3M2", StDType::kF6E3M2, 8, 6},
               {"F8_E8M0", StDType::kF8E8M0, 3, 3},
               {"F8_E4M3FNUZ", StDType::kF8E4M3Fnuz, 3, 3},
               {"F8_E5M2FNUZ", StDType::kF8E5M2Fnuz, 3, 3},
               {"C64", StDType::kC64, 3, 24},
               {"U64", StDType::kU64, 1, 8}};
  for (const auto& kind : kinds) {
    const std::string header =
        std::string(R"({"t":{"dtype":")") + kind.dtype + R"(","shape":[)" +
        std::to_string(kind.elements) + R"(],"data_offsets":[0,)" +
        std::to_string(kind.bytes) + "]}}";
    std::unique_ptr<SafetensorsFile> file;
    ASSERT_TRUE(ParseBytes(MakeFile(header, kind.bytes), &file).ok()) << header;
    EXPECT_EQ(file->Find("t")->dtype, kind.expected);
    EXPECT_STREQ(StDTypeName(kind.expected), kind.dtype);
  }
  ExpectError(
      MakeFile(R"({"t":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})", 2),
      "3 F4 elements do not fill whole bytes");
  ExpectError(
      MakeFile(R"({"t":{"dtype":"F6_E2M3","shape":[2],"data_offsets":[0,2]}})",
               2),
      "2 F6_E2M3 elements do not fill whole bytes");
}

TEST(Safetensors, OpenNamesTheFile) {
  std::unique_ptr<SafetensorsFile> file;
  Status status =
      SafetensorsFile::Open("/nonexistent/model.safetensors", &file);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(
      status.message().find("/nonexistent/model.safetensors: cannot open"),
      std::string::npos)
      << status.message();
  const std::string path = ::testing::TempDir() + "/truncated.safetensors";
  const auto bytes = MakeFile(kTwoTensors, 24);
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), 30);
  status = SafetensorsFile::Open(path, &file);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find(path + ": truncated"), std::string::npos)
      << status.message();
  std::remove(path.c_str());
}

TEST(Safetensors, OpensTheRealModel) {
  SALIENCE_REQUIRE_MODEL(dir);
  std::unique_ptr<SafetensorsFile> file;
  const Status status =
      SafetensorsFile::Open(dir + "/model.safetensors", &file);
  ASSERT_TRUE(status.ok()) << status.ToString();
  const StTensor* words = file->Find("embeddings.word_embeddings.weight");
  ASSERT_NE(words, nullptr);
  EXPECT_EQ(words->shape, (std::vector<std::int64_t>{30522, 384}));
  EXPECT_EQ(words->dtype, StDType::kF32);
}

}  // namespace
}  // namespace salience::model
