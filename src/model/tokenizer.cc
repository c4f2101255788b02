#include "model/tokenizer.h"

#include <utf8proc.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

#include "model/file_text.h"

namespace salience::model {
namespace {

Status Error(const std::string& label, const std::string& what) {
  return Status(StatusCode::kInvalidArgument, label + ": " + what);
}

utf8proc_category_t Category(char32_t c) {
  return utf8proc_category(static_cast<utf8proc_int32_t>(c));
}

// tokenizers' is_control: "other" categories, but tab/newline/CR are
// whitespace.
bool IsControl(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  switch (Category(c)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CN:
      return true;
    default:
      return false;
  }
}

// Rust's char::is_whitespace (White_Space); its Cc members other than
// tab/newline/CR are removed as controls before this is asked.
bool IsWhitespace(char32_t c) {
  if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0x0B ||
      c == 0x0C || c == 0x85)
    return true;
  const utf8proc_category_t category = Category(c);
  return category == UTF8PROC_CATEGORY_ZS || category == UTF8PROC_CATEGORY_ZL ||
         category == UTF8PROC_CATEGORY_ZP;
}

// ASCII punctuation (including $+<=>^`|~, which Unicode calls symbols) or
// any Unicode P* category.
bool IsPunctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
      (c >= 123 && c <= 126))
    return true;
  switch (Category(c)) {
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
      return true;
    default:
      return false;
  }
}

// The CJK Unified Ideographs blocks BERT puts spaces around.
bool IsChineseChar(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

void Decompose(char32_t c, std::vector<char32_t>* out) {
  utf8proc_int32_t buffer[32];
  int last_boundclass = 0;
  const utf8proc_ssize_t n =
      utf8proc_decompose_char(static_cast<utf8proc_int32_t>(c), buffer, 32,
                              UTF8PROC_DECOMPOSE, &last_boundclass);
  if (n <= 0 || n > 32) {
    out->push_back(c);
    return;
  }
  for (utf8proc_ssize_t i = 0; i < n; ++i)
    out->push_back(static_cast<char32_t>(buffer[i]));
}

// Canonical ordering of combining marks (NFD's second half): a stable sort
// of each run of non-starters by combining class.
void CanonicalOrder(std::vector<char32_t>* text) {
  auto combining_class = [](char32_t c) {
    return utf8proc_get_property(static_cast<utf8proc_int32_t>(c))
        ->combining_class;
  };
  std::size_t i = 0;
  while (i < text->size()) {
    if (combining_class((*text)[i]) == 0) {
      ++i;
      continue;
    }
    std::size_t end = i;
    while (end < text->size() && combining_class((*text)[end]) != 0) ++end;
    std::stable_sort(text->begin() + i, text->begin() + end,
                     [&](char32_t a, char32_t b) {
                       return combining_class(a) < combining_class(b);
                     });
    i = end;
  }
}

}  // namespace

bool DecodeUtf8(std::string_view text, std::vector<char32_t>* code_points,
                std::size_t* error_offset) {
  const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  std::size_t offset = 0;
  while (offset < text.size()) {
    utf8proc_int32_t c = 0;
    const utf8proc_ssize_t used =
        utf8proc_iterate(bytes + offset, text.size() - offset, &c);
    if (used <= 0) {
      *error_offset = offset;
      return false;
    }
    code_points->push_back(static_cast<char32_t>(c));
    offset += static_cast<std::size_t>(used);
  }
  return true;
}

void AppendUtf8(char32_t code_point, std::string* out) {
  utf8proc_uint8_t buffer[4];
  const utf8proc_ssize_t n =
      utf8proc_encode_char(static_cast<utf8proc_int32_t>(code_point), buffer);
  out->append(reinterpret_cast<const char*>(buffer),
              static_cast<std::size_t>(n));
}

Status Tokenizer::FromJsonFile(const std::string& path,
                               std::unique_ptr<Tokenizer>* tokenizer) {
  std::string text;
  const Status status = ReadFileText(path, kMaxTokenizerJsonBytes, &text);
  if (!status.ok()) return status;
  return FromJsonText(text, path, tokenizer);
}

namespace {

// A field of `object` that must have the type `is` checks (`what` names the
// type in the message); absent leaves *value as it is.
template <typename T>
Status TypedField(const std::string& label, const nlohmann::json& object,
                  const std::string& path, const char* name,
                  bool (nlohmann::json::*is)() const noexcept, const char* what,
                  T* value) {
  const auto it = object.find(name);
  if (it == object.end()) return Status::Ok();
  if (!((*it).*is)())
    return Error(label, path + name + ": expected " + what + ", got " +
                            it->dump(-1, ' ', false,
                                     nlohmann::json::error_handler_t::replace)
                                .substr(0, 40));
  *value = it->get<T>();
  return Status::Ok();
}

}  // namespace

Status Tokenizer::FromJsonText(std::string_view json, const std::string& label,
                               std::unique_ptr<Tokenizer>* tokenizer) {
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    return Error(label, std::string("not valid JSON: ") + e.what());
  }
  std::unique_ptr<Tokenizer> result(new Tokenizer());
  // Every access below checks types first; the handler is a backstop.
  try {
    if (!root.is_object()) return Error(label, "top level is not an object");
    const auto model_it = root.find("model");
    if (model_it == root.end() || !model_it->is_object())
      return Error(label, "model: expected an object");
    const nlohmann::json& model = *model_it;
    std::string type;
    Status status = TypedField(label, model, "model.", "type",
                               &nlohmann::json::is_string, "a string", &type);
    if (!status.ok()) return status;
    if (type != "WordPiece")
      return Error(label, "model.type: expected \"WordPiece\", got " +
                              model.value("type", nlohmann::json()).dump());
    std::string unk = "[UNK]";
    status =
        TypedField(label, model, "model.", "continuing_subword_prefix",
                   &nlohmann::json::is_string, "a string", &result->prefix_);
    if (status.ok())
      status = TypedField(label, model, "model.", "unk_token",
                          &nlohmann::json::is_string, "a string", &unk);
    if (status.ok())
      status = TypedField(label, model, "model.", "max_input_chars_per_word",
                          &nlohmann::json::is_number_integer, "an integer",
                          &result->max_input_chars_per_word_);
    if (!status.ok()) return status;
    if (result->max_input_chars_per_word_ < 1 ||
        result->max_input_chars_per_word_ > kMaxInputCharsPerWord)
      return Error(label,
                   "model.max_input_chars_per_word: expected an integer "
                   "in [1, " +
                       std::to_string(kMaxInputCharsPerWord) + "], got " +
                       model.at("max_input_chars_per_word").dump());
    const auto vocab_it = model.find("vocab");
    if (vocab_it == model.end() || !vocab_it->is_object() || vocab_it->empty())
      return Error(label, "model.vocab: expected a non-empty object");
    const nlohmann::json& vocab = *vocab_it;
    if (vocab.size() > 10'000'000)
      return Error(label, "model.vocab: too large");
    result->id_to_token_.resize(vocab.size());
    for (const auto& [token, id] : vocab.items()) {
      if (!id.is_number_unsigned() || id.get<std::uint64_t>() >= vocab.size())
        return Error(label, "model.vocab['" + token + "']: id must be in [0, " +
                                std::to_string(vocab.size()) + ")");
      const auto index = id.get<std::int32_t>();
      if (!result->id_to_token_[index].empty())
        return Error(
            label, "model.vocab: id " + std::to_string(index) + " used twice");
      result->id_to_token_[index] = token;
      result->vocab_[token] = index;
    }
    const auto lookup = [&](const std::string& token, std::int32_t* id) {
      const auto it = result->vocab_.find(token);
      if (it == result->vocab_.end())
        return Error(label, "model.vocab has no " + token);
      *id = it->second;
      return Status::Ok();
    };
    for (auto [token, id] :
         {std::pair{unk, &result->unk_id_},
          std::pair{std::string("[CLS]"), &result->cls_id_},
          std::pair{std::string("[SEP]"), &result->sep_id_},
          std::pair{std::string("[PAD]"), &result->pad_id_}}) {
      status = lookup(token, id);
      if (!status.ok()) return status;
    }
    const auto normalizer = root.find("normalizer");
    if (normalizer != root.end() && normalizer->is_null()) {
      // No normalizer: the text goes to the pre-tokenizer as it is.
      result->clean_text_ = result->handle_chinese_chars_ = false;
      result->strip_accents_ = result->lowercase_ = false;
    } else if (normalizer != root.end()) {
      if (!normalizer->is_object() ||
          normalizer->value("type", nlohmann::json()) != "BertNormalizer")
        return Error(label, "normalizer.type: expected \"BertNormalizer\"");
      for (auto [name, flag] :
           {std::pair{"clean_text", &result->clean_text_},
            std::pair{"handle_chinese_chars", &result->handle_chinese_chars_},
            std::pair{"lowercase", &result->lowercase_}}) {
        status = TypedField(label, *normalizer, "normalizer.", name,
                            &nlohmann::json::is_boolean, "true or false", flag);
        if (!status.ok()) return status;
      }
      // strip_accents null (or absent) follows lowercase, as BERT's does.
      result->strip_accents_ = result->lowercase_;
      const auto strip = normalizer->find("strip_accents");
      if (strip != normalizer->end() && !strip->is_null()) {
        status = TypedField(label, *normalizer, "normalizer.", "strip_accents",
                            &nlohmann::json::is_boolean, "true, false or null",
                            &result->strip_accents_);
        if (!status.ok()) return status;
      }
    }
    const auto added = root.find("added_tokens");
    if (added != root.end() && !added->is_null()) {
      if (!added->is_array())
        return Error(label, "added_tokens: expected an array");
      for (std::size_t i = 0; i < added->size(); ++i) {
        const nlohmann::json& token = (*added)[i];
        const std::string where = "added_tokens[" + std::to_string(i) + "]";
        const auto content = token.is_object()
                                 ? token.find("content")
                                 : nlohmann::json::const_iterator();
        const auto id = token.is_object() ? token.find("id")
                                          : nlohmann::json::const_iterator();
        if (!token.is_object() || content == token.end() ||
            !content->is_string() || id == token.end() ||
            !id->is_number_unsigned() ||
            id->get<std::uint64_t>() >= result->id_to_token_.size())
          return Error(label, where +
                                  ": expected {\"content\": a string, \"id\": "
                                  "an id in [0, " +
                                  std::to_string(result->id_to_token_.size()) +
                                  ")}");
        const std::string text = content->get<std::string>();
        if (text.empty()) continue;
        result->added_tokens_.emplace_back(text, id->get<std::int32_t>());
      }
      // Longest first, so "[MASK]" wins over a shorter token at one place.
      std::stable_sort(result->added_tokens_.begin(),
                       result->added_tokens_.end(),
                       [](const auto& a, const auto& b) {
                         return a.first.size() > b.first.size();
                       });
    }
  } catch (const nlohmann::json::exception& e) {
    return Error(label, std::string("unexpected structure: ") + e.what());
  }
  *tokenizer = std::move(result);
  return Status::Ok();
}

Status Tokenizer::Words(std::string_view text,
                        std::vector<std::string>* words) const {
  std::vector<char32_t> input;
  std::size_t error_offset = 0;
  if (!DecodeUtf8(text, &input, &error_offset))
    return Status(
        StatusCode::kInvalidArgument,
        "input text: invalid UTF-8 at byte " + std::to_string(error_offset));
  // Normalize.
  std::vector<char32_t> cleaned;
  cleaned.reserve(input.size());
  for (char32_t c : input) {
    if (clean_text_) {
      if (c == 0 || c == 0xFFFD || IsControl(c)) continue;
      if (IsWhitespace(c)) c = ' ';
    }
    if (handle_chinese_chars_ && IsChineseChar(c)) {
      cleaned.push_back(' ');
      cleaned.push_back(c);
      cleaned.push_back(' ');
    } else {
      cleaned.push_back(c);
    }
  }
  std::vector<char32_t> normalized;
  if (strip_accents_) {
    std::vector<char32_t> decomposed;
    for (char32_t c : cleaned) Decompose(c, &decomposed);
    CanonicalOrder(&decomposed);
    for (char32_t c : decomposed)
      if (Category(c) != UTF8PROC_CATEGORY_MN) normalized.push_back(c);
  } else {
    normalized = std::move(cleaned);
  }
  if (lowercase_)
    for (char32_t& c : normalized)
      c = static_cast<char32_t>(
          utf8proc_tolower(static_cast<utf8proc_int32_t>(c)));
  // Pre-tokenize: whitespace separates, punctuation stands alone.
  std::string word;
  const auto flush = [&] {
    if (!word.empty()) words->push_back(std::move(word));
    word.clear();
  };
  for (char32_t c : normalized) {
    if (IsWhitespace(c)) {
      flush();
    } else if (IsPunctuation(c)) {
      flush();
      AppendUtf8(c, &word);
      flush();
    } else {
      AppendUtf8(c, &word);
    }
  }
  flush();
  return Status::Ok();
}

void Tokenizer::WordPiece(const std::string& word,
                          std::vector<std::int32_t>* ids) const {
  std::vector<char32_t> chars;
  std::size_t unused = 0;
  DecodeUtf8(word, &chars, &unused);
  if (static_cast<std::int64_t>(chars.size()) > max_input_chars_per_word_) {
    ids->push_back(unk_id_);
    return;
  }
  // Byte offset of each character boundary.
  std::vector<std::size_t> boundary{0};
  for (char32_t c : chars) {
    std::string encoded;
    AppendUtf8(c, &encoded);
    boundary.push_back(boundary.back() + encoded.size());
  }
  std::vector<std::int32_t> pieces;
  std::size_t start = 0;
  while (start < chars.size()) {
    std::size_t end = chars.size();
    std::int32_t match = -1;
    while (start < end) {
      std::string candidate =
          word.substr(boundary[start], boundary[end] - boundary[start]);
      if (start > 0) candidate = prefix_ + candidate;
      const auto it = vocab_.find(candidate);
      if (it != vocab_.end()) {
        match = it->second;
        break;
      }
      --end;
    }
    if (match < 0) {
      ids->push_back(unk_id_);
      return;
    }
    pieces.push_back(match);
    start = end;
  }
  ids->insert(ids->end(), pieces.begin(), pieces.end());
}

Status Tokenizer::Encode(std::string_view text, std::int64_t max_length,
                         Encoding* encoding) const {
  std::vector<std::int32_t> body;
  // Added tokens are matched verbatim in the raw text, before normalization.
  std::size_t position = 0;
  while (position <= text.size()) {
    std::size_t next = text.size();
    const std::pair<std::string, std::int32_t>* found = nullptr;
    for (const auto& added : added_tokens_) {
      const std::size_t at = text.find(added.first, position);
      if (at != std::string_view::npos && at < next) {
        next = at;
        found = &added;
      }
    }
    std::vector<std::string> words;
    Status status = Words(text.substr(position, next - position), &words);
    if (!status.ok()) return status;
    for (const std::string& word : words) WordPiece(word, &body);
    if (found == nullptr) break;
    body.push_back(found->second);
    position = next + found->first.size();
  }
  const std::int64_t room = std::max<std::int64_t>(max_length - 2, 0);
  if (static_cast<std::int64_t>(body.size()) > room) body.resize(room);
  encoding->ids.clear();
  encoding->ids.push_back(cls_id_);
  encoding->ids.insert(encoding->ids.end(), body.begin(), body.end());
  encoding->ids.push_back(sep_id_);
  encoding->tokens.clear();
  for (std::int32_t id : encoding->ids)
    encoding->tokens.push_back(TokenString(id));
  return Status::Ok();
}

Status Tokenizer::EncodeBatch(const std::vector<std::string>& texts,
                              std::int64_t max_length, Batch* batch) const {
  std::vector<Encoding> encodings(texts.size());
  std::int64_t longest = 0;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    Status status = Encode(texts[i], max_length, &encodings[i]);
    if (!status.ok())
      return Status(status.code(),
                    "text " + std::to_string(i) + ": " + status.message());
    longest = std::max<std::int64_t>(longest, encodings[i].ids.size());
  }
  batch->batch = static_cast<std::int64_t>(texts.size());
  batch->seq_len = longest;
  batch->ids.assign(batch->batch * longest, pad_id_);
  batch->lengths.clear();
  for (std::size_t i = 0; i < encodings.size(); ++i) {
    std::copy(encodings[i].ids.begin(), encodings[i].ids.end(),
              batch->ids.begin() + static_cast<std::int64_t>(i) * longest);
    batch->lengths.push_back(
        static_cast<std::int32_t>(encodings[i].ids.size()));
  }
  return Status::Ok();
}

const std::string& Tokenizer::TokenString(std::int32_t id) const {
  static const std::string kUnknown = "[?]";
  if (id < 0 || id >= static_cast<std::int32_t>(id_to_token_.size()))
    return kUnknown;
  return id_to_token_[id];
}

}  // namespace salience::model
